"""Issue 23, the command line's share: `predict` goes on past files it cannot read (like cat), handles any classifier fastai
exports and refuses other tasks in one line, escapes its TSV; `summary` at any --size; names over 255 bytes; a
self-contained ONNX file; `--help` without torch. Each case asserts the exit status, one line with no traceback, and the
files left on disk."""
import io, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from torch import nn
from PIL import Image
from xresnet_fa.cli import ARCHS, main
from xresnet_fa.family import FAMILY
from xresnet_fa.xresnet import xresnet18
from test_hostile import one_line

LONG = 'x'*300  # one path component over the 255 bytes Linux allows


def pictures(root: Path, n=6, side=12) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n): Image.fromarray(np.full((side, side, 3), 30*i, np.uint8)).save(root/f'{i}.png')
    return [root/f'{i}.png' for i in range(n)]


def fixed(model: nn.Module, bias) -> nn.Module:
    "The model with its last layer answering `bias` whatever the image, so the probabilities are known exactly"
    fc = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    with torch.no_grad(): fc.weight.zero_(); fc.bias.copy_(torch.tensor(bias, dtype=torch.float))
    return model


@pytest.fixture(scope='module')
def learners(tmp_path_factory):
    "Tiny exported learners of the kinds fastai makes: plain torch loss, multi-label, regression, segmentation"
    from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, MultiCategoryBlock, RegressionBlock, MaskBlock,
                                   RandomSplitter, Resize, Learner, unet_learner)
    root = tmp_path_factory.mktemp('learners')
    files = pictures(root/'images', n=8)
    def dls(blocks, get_y):
        return DataBlock(blocks, get_y=get_y, item_tfms=Resize(8), splitter=RandomSplitter(0.25, seed=0)).dataloaders(files, bs=2, num_workers=0)
    out = {}
    def export(name, learn): learn.export(root/f'{name}.pkl'); out[name] = root/f'{name}.pkl'
    single = dls((ImageBlock, CategoryBlock), lambda f: 'a' if int(f.stem) < 4 else 'b')
    export('plain', Learner(single, fixed(xresnet18(n_out=2), [0., 1.]), loss_func=nn.CrossEntropyLoss()))  # no .activation
    multi = dls((ImageBlock, MultiCategoryBlock), lambda f: ['x', 'y'] if int(f.stem) % 2 else ['x'])
    export('multi_two', Learner(multi, fixed(xresnet18(n_out=2), [1., 2.])))  # BCEWithLogitsLossFlat, threshold 0.5
    export('multi_none', Learner(multi, fixed(xresnet18(n_out=2), [-2., -3.])))
    export('regression', Learner(dls((ImageBlock, RegressionBlock), lambda f: float(f.stem)), xresnet18(n_out=1)))
    for f in files: Image.fromarray(np.full((12, 12), int(f.stem) % 2, np.uint8)).save(root/f'{f.stem}_mask.png')
    masks = dls((ImageBlock, MaskBlock(['ground', 'thing'])), lambda f: f.parent.parent/f'{f.stem}_mask.png')
    export('segmentation', unet_learner(masks, xresnet18, pretrained=False, n_out=2))
    return out


def predict(capsys, model, *images, stdout=None):
    "`xresnet-fa predict` in this process: (status, stdout lines, stderr)"
    old, sys.stdout = sys.stdout, stdout or sys.stdout
    try: status = main(['predict', '--model', str(model), '--precision', '32', '--bs', '2', *map(str, images)])
    finally: sys.stdout = old
    cap = capsys.readouterr()
    return status, (stdout.getvalue() if stdout else cap.out).splitlines(), cap.err


# -- defect 9: predict behaves like cat ----------------------------------------------------------------------------

class DamagingStdout(io.StringIO):
    "stdout that, on the first prediction written, deletes one file and overwrites another: both are in a later batch"
    def __init__(self, gone: Path, damaged: Path):
        super().__init__(); self.gone, self.damaged = gone, damaged
    def write(self, s):
        if self.gone.exists(): self.gone.unlink(); self.damaged.write_text('no longer an image')
        return super().write(s)


def test_predict_reports_each_unreadable_file_and_predicts_the_rest(learners, tmp_path, capsys):
    "Missing at the start, not an image, deleted and damaged mid-run: one stderr line each, every other file predicted, exit 1"
    files = pictures(tmp_path/'images')
    (tmp_path/'notes.png').write_text('not an image')
    images = [files[0], tmp_path/'missing.png', files[1], tmp_path/'notes.png', *files[2:]]  # batches of 2: deleted in a later one
    status, out, err = predict(capsys, learners['plain'], *images, stdout=DamagingStdout(files[3], files[4]))
    one_line(err, 1, status, f'xresnet-fa: {files[4]}: not a readable image (UnidentifiedImageError')
    assert [row.split('\t')[0] for row in out] == [str(f) for f in (files[0], files[1], files[2], files[5])], out
    failures = [l for l in err.splitlines() if l.startswith('xresnet-fa:') and 'predicting in' not in l]
    assert failures == [f'xresnet-fa: {tmp_path/"missing.png"}: no such file',
                        f'xresnet-fa: {tmp_path/"notes.png"}: not a readable image (UnidentifiedImageError: cannot identify image file {str(tmp_path/"notes.png")!r})',
                        f'xresnet-fa: {files[3]}: no such file',
                        f'xresnet-fa: {files[4]}: not a readable image (UnidentifiedImageError: cannot identify image file {str(files[4])!r})'], err
    assert not files[3].exists() and files[4].read_text() == 'no longer an image'  # the test's own doing; predict wrote nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ['images', 'notes.png']


def test_predict_with_no_readable_file_is_exit_2(learners, tmp_path, capsys):
    status, out, err = predict(capsys, learners['plain'], tmp_path/'a.png', tmp_path/'b.png')
    one_line(err, 2, status, f'xresnet-fa: {tmp_path/"b.png"}: no such file')
    assert out == [] and f'xresnet-fa: {tmp_path/"a.png"}: no such file' in err


# -- defect 10: any classifier fastai exports; other tasks refused ---------------------------------------------------

def test_predict_with_a_plain_torch_loss_takes_the_softmax(learners, tmp_path, capsys):
    status, out, err = predict(capsys, learners['plain'], *pictures(tmp_path/'images', n=3))
    assert status == 0 and 'Traceback' not in err, err
    p = torch.softmax(torch.tensor([0., 1.]), 0)[1].item()
    assert [row.split('\t')[1:] for row in out] == [['b', f'{p:.4f}']]*3, out


def test_predict_multi_label_prints_every_label_above_the_threshold(learners, tmp_path, capsys):
    images = pictures(tmp_path/'images', n=2)
    status, out, err = predict(capsys, learners['multi_two'], *images)
    y, x = torch.sigmoid(torch.tensor([2., 1.])).tolist()
    assert status == 0 and out == [f'{images[0]}\ty\t{y:.4f}', f'{images[0]}\tx\t{x:.4f}',
                                   f'{images[1]}\ty\t{y:.4f}', f'{images[1]}\tx\t{x:.4f}'], (out, err)
    status, out, err = predict(capsys, learners['multi_none'], images[0])
    assert status == 0 and out == [f'{images[0]}\t\t{torch.sigmoid(torch.tensor(-2.)).item():.4f}'], (out, err)


@pytest.mark.parametrize('task', ['regression', 'segmentation'])
def test_predict_refuses_a_learner_that_does_not_classify(learners, tmp_path, capsys, task):
    image = pictures(tmp_path/'images', n=1)[0]
    status, out, err = predict(capsys, learners[task], image)
    one_line(err, 2, status, f"xresnet-fa: error: --model {learners[task]}: not a classifier: its targets are not classes")
    assert out == [] and sorted(p.name for p in tmp_path.iterdir()) == ['images']


# -- defect 11: summary at any size --------------------------------------------------------------------------------

def test_summary_at_5000_px_runs_on_the_meta_device(tmp_path):
    "No forward pass at full size: it finishes under a generous limit, and the spatial sizes are the network's"
    r = subprocess.run([sys.executable, '-m', 'xresnet_fa', 'summary', '--arch', 'xresnet18', '--size', '5000'],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
    shapes = {line.split()[0]: line[9:29].strip() for line in r.stdout.splitlines()[2:-1]}
    assert shapes == {'stem': '(64, 1250, 1250)', 'stage_1': '(64, 1250, 1250)', 'stage_2': '(128, 625, 625)',
                      'stage_3': '(256, 313, 313)', 'stage_4': '(512, 157, 157)', 'head': '(1000,)'}, r.stdout
    assert len(r.stdout.splitlines()[-1].split()) == 3, r.stdout  # total, parameters, GMACs: each its own column
    assert list(tmp_path.iterdir()) == []


# -- defect 12: names over 255 bytes -------------------------------------------------------------------------------

def test_predict_names_over_255_bytes_are_one_line(learners, tmp_path, capsys):
    status, out, err = predict(capsys, tmp_path/LONG/'export.pkl', tmp_path/'a.png')
    one_line(err, 2, status, f'xresnet-fa: error: --model {tmp_path/LONG/"export.pkl"}: a name in its path is longer than the file system allows')
    image = pictures(tmp_path/'images', n=1)[0]
    status, out, err = predict(capsys, learners['plain'], image, tmp_path/f'{LONG}.png')
    one_line(err, 1, status, f'xresnet-fa: {tmp_path/LONG}.png: a name in its path is longer than the file system allows (255 bytes)')
    assert [row.split('\t')[0] for row in out] == [str(image)] and sorted(p.name for p in tmp_path.iterdir()) == ['images']


# -- defect 18: the TSV is escaped ---------------------------------------------------------------------------------

def test_predict_escapes_tab_newline_and_backslash_in_names(learners, tmp_path, capsys):
    odd = tmp_path/'a\tb\nc\\d.png'
    shutil.copy(pictures(tmp_path/'images', n=1)[0], odd)
    status, out, err = predict(capsys, learners['plain'], odd)
    assert status == 0 and len(out) == 1, (out, err)
    assert out[0].split('\t')[:2] == [str(tmp_path) + '/a\\tb\\nc\\\\d.png', 'b'], out
    status, out, err = predict(capsys, learners['plain'], tmp_path/'gone\nnow.png')
    one_line(err, 2, status, f'xresnet-fa: {tmp_path}/gone\\nnow.png: no such file')
    assert err.count('\n') == 2  # 'predicting in ...' and the one line


# -- defect 22: one ONNX file --------------------------------------------------------------------------------------

def test_export_onnx_writes_one_file_that_runs_alone(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    from xresnet_fa.fast import export_onnx, fuse
    m = xresnet18(n_out=3).eval()
    (tmp_path/'made').mkdir()
    path = export_onnx(fuse(m, channels_last=False), tmp_path/'made'/'m.onnx', size=32)
    assert sorted(p.name for p in (tmp_path/'made').iterdir()) == ['m.onnx']
    (tmp_path/'elsewhere').mkdir(); moved = shutil.copy(path, tmp_path/'elsewhere')
    x = torch.randn(2, 3, 32, 32)
    (out,) = ort.InferenceSession(str(moved), providers=['CPUExecutionProvider']).run(None, {'image': x.numpy()})
    with torch.inference_mode(): ref = m(x)
    assert (torch.from_numpy(out) - ref).abs().max() <= 1e-4*ref.abs().max() + 1e-6


# -- --help without torch ------------------------------------------------------------------------------------------

def test_parsing_imports_neither_torch_nor_fastai():
    assert ARCHS == tuple(FAMILY)
    code = ("import sys, xresnet_fa.cli as c; p = c.parser(); p.parse_args(['train', '--arch', 'xresnet50']); p.format_help();"
            "assert 'torch' not in sys.modules and 'fastai' not in sys.modules, sorted(sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, '-m', 'xresnet_fa', 'train', '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'xse_resnext50' in r.stdout and r.stderr == '', r.stderr
