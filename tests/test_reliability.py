"Reliability of `xresnet-fa train`: messy data folders, runs killed and resumed, non-finite losses, untrusted checkpoints."
import json, os, shutil, signal, struct, subprocess, sys, time, zlib
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from fastai.callback.core import Callback
from xresnet_fa.cli import main
from xresnet_fa.callbacks import RunCallback, TrainingError
from xresnet_fa.train import train


def _ctrl_c_reaches_it():
    "In the child before it starts: Ctrl-C as a terminal delivers it (a shell's background job, such as CI launched with `&`, inherits it ignored)"
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, **kw):
    "`python -m xresnet_fa ARGS` in a fresh process, stdout and stderr in one stream"
    return subprocess.Popen([sys.executable, '-m', 'xresnet_fa', *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_reaches_it, **kw)


def here(*args, capsys) -> tuple[int, str]:
    "`xresnet-fa ARGS` in this process, for the runs whose process is not what a test is about (a reference, a resume): status, stdout + stderr"
    status = main(list(map(str, args)))
    c = capsys.readouterr()
    return status, c.out + c.err


def images(root: Path, classes=('a', 'b'), n=8, side=12, mode='RGB', seed=0):
    "n noisy images per class folder, each class a different mean, so there is something to learn"
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.clip(rng.normal(60 + 120*k, 30, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).convert(mode).save(root/c/f'{i}.png')
    return root


def run_train(data, out, capsys, *extra):
    "`xresnet-fa train` in this process on a tiny setting: (status, stderr, metrics or None)"
    status = main(['train', '--data', str(data), '--out', str(out), '--epochs', '1', '--size', '8', '--bs', '4', *map(str, extra)])
    err = capsys.readouterr().err
    metrics = json.loads((out/'metrics.json').read_text()) if (out/'metrics.json').exists() else None
    return status, err, metrics


def assert_skipped(tmp_path, capsys, name, reason):
    "The run trains, and `name` is listed with `reason` once in the report on stderr and in metrics.json"
    status, err, m = run_train(tmp_path/'data', tmp_path/'out', capsys)
    assert status == 0, err
    assert err.count('skipped 1 of 17 image files') == 1 and name in err and reason in err, err
    assert m['skipped'] == [{'file': name, 'reason': m['skipped'][0]['reason']}] and reason in m['skipped'][0]['reason'], m['skipped']
    assert m['n_train'] + m['n_valid'] == 16 and 'accuracy' in m


# -- data: one test per case ------------------------------------------------------------------------------------

def test_truncated_jpeg_is_skipped_and_reported_before_training(tmp_path):
    data = images(tmp_path/'data')
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path/'full.jpg', quality=95)
    b = (tmp_path/'full.jpg').read_bytes()
    (data/'a'/'cut.jpg').write_bytes(b[:len(b)//2])
    p = cli('train', '--data', data, '--out', tmp_path/'out', '--epochs', 1, '--size', 8, '--bs', 4)
    text, _ = p.communicate(timeout=600)
    assert p.returncode == 0, text[-3000:]
    report, table = text.index('skipped 1 of 17 image files'), text.index('train_loss')
    assert report < table, text  # the report comes before the first epoch
    assert 'a/cut.jpg: OSError: image file is truncated' in text, text
    assert json.loads((tmp_path/'out'/'metrics.json').read_text())['skipped'][0]['file'] == 'a/cut.jpg'


def test_zero_byte_file_is_skipped(tmp_path, capsys):
    open(images(tmp_path/'data')/'b'/'empty.png', 'wb').close()
    assert_skipped(tmp_path, capsys, 'b/empty.png', 'not an image PIL can read')


def test_text_file_named_png_is_skipped(tmp_path, capsys):
    (images(tmp_path/'data')/'a'/'page.png').write_text('<html><body>404 not found</body></html>')
    assert_skipped(tmp_path, capsys, 'a/page.png', 'not an image PIL can read')


def test_non_image_files_are_ignored_and_listed(tmp_path, capsys):
    data = images(tmp_path/'data')
    (data/'a'/'notes.txt').write_text('taken on a sunny day')
    (data/'labels.csv').write_text('file,label\n')
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert 'ignored 2 files that are not an image by its extension' in err and 'a/notes.txt' in err, err
    assert sorted(m['ignored']) == ['a/notes.txt', 'labels.csv'] and m['skipped'] == [] and m['n_train'] + m['n_valid'] == 16


def test_empty_class_folder_is_not_a_class(tmp_path, capsys):
    data = images(tmp_path/'data', classes=('a', 'b', 'c'))
    shutil.rmtree(data/'c'); (data/'c').mkdir()
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert 'ignored class folders without a readable image: c' in err, err
    assert m['classes'] == ['a', 'b'] and m['empty_class_folders'] == ['c']


def test_single_class_is_refused_in_one_line(tmp_path, capsys):
    data = images(tmp_path/'data', classes=('a',))
    (data/'b').mkdir(); open(data/'b'/'broken.png', 'wb').close()  # its only image is unreadable
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 2 and err.count('\n') == 1 and err.startswith('xresnet-fa: error:'), err
    assert 'one class (a)' in err and 'unreadable: b' in err and 'at least two class folders' in err, err
    assert m is None and not (tmp_path/'out').exists()


def test_mixed_grey_rgb_rgba_palette_images_train(tmp_path, capsys):
    "Every image mode PIL commonly writes, side by side in each class; fastai converts each to RGB"
    data = images(tmp_path/'data', n=2)
    for c in 'ab':
        base = Image.open(data/c/'0.png')
        for mode in ['L', 'RGBA', 'P', 'LA', '1', 'I;16', 'CMYK']:
            im = base.convert('L').convert(mode) if mode == 'I;16' else base.convert(mode)
            im.save(data/c/f"mode_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}")
    modes = {Image.open(f).mode for f in data.rglob('*.*')}
    assert modes == {'L', 'RGB', 'RGBA', 'P', 'LA', '1', 'I;16', 'CMYK'}, modes
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert m['skipped'] == [] and m['n_train'] + m['n_valid'] == 18 and 'skipped' not in err, err


def test_one_very_large_image_trains(tmp_path, capsys):
    "9600 x 9600 pixels (92 megapixels, more than PIL's decompression-bomb warning threshold): read and resized like any other"
    data = images(tmp_path/'data')
    Image.new('L', (9600, 9600), 200).save(data/'b'/'huge.png')
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert m['skipped'] == [] and m['n_train'] + m['n_valid'] == 17


def test_decompression_bomb_is_skipped(tmp_path, capsys):
    "A PNG whose header claims 20000 x 10000 pixels (over PIL's limit) is set aside without decoding it"
    data = images(tmp_path/'data')
    Image.new('L', (1, 1)).save(tmp_path/'one.png')
    png = bytearray((tmp_path/'one.png').read_bytes())
    png[16:24] = struct.pack('>II', 20000, 10000)
    png[29:33] = struct.pack('>I', zlib.crc32(bytes(png[12:29])))
    (data/'a'/'bomb.png').write_bytes(png)
    assert_skipped(tmp_path, capsys, 'a/bomb.png', 'DecompressionBombError')


def test_train_val_layout_with_a_class_whose_training_images_are_all_unreadable(tmp_path, capsys):
    "train/ + val/ (the name many datasets use) is a presplit folder; a class with no readable training image is refused, saying why"
    images(tmp_path/'data'/'train'); images(tmp_path/'data'/'val', n=3)
    status, err, m = run_train(tmp_path/'data', tmp_path/'out', capsys)
    assert status == 0 and 'ignored' not in err and 'skipped' not in err, err
    assert (m['n_train'], m['n_valid'], m['classes']) == (16, 6, ['a', 'b'])
    (tmp_path/'data'/'val'/'c').mkdir(); images(tmp_path/'data'/'val', classes=('c',), n=2)
    (tmp_path/'data'/'train'/'c').mkdir()
    for i in range(3): (tmp_path/'data'/'train'/'c'/f'{i}.png').write_bytes(b'')
    status, err, _ = run_train(tmp_path/'data', tmp_path/'out2', capsys)
    assert status == 2 and err.count('\n') == 1, err
    assert "val/ has classes with no training images: ['c'] (train/c has 3 image files, none readable, e.g. 0.png: not an image PIL can read)" in err, err


def test_no_readable_image_is_refused(tmp_path, capsys):
    data = tmp_path/'data'
    for c in 'ab':
        (data/c).mkdir(parents=True); (data/c/'x.png').write_text('not a png')
    status, err, _ = run_train(data, tmp_path/'out', capsys)
    assert status == 2 and 'none of its 2 image files can be read' in err and err.count('\n') == 1, err


# -- interrupted runs -------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small(digits, tmp_path_factory):
    "A small copy of the digits (12 training and 4 validation images per class), so an epoch takes about a second"
    root = tmp_path_factory.mktemp('small')
    for split, n in (('train', 12), ('valid', 4)):
        for d in sorted((digits/split).iterdir()):
            (root/split/d.name).mkdir(parents=True)
            for f in sorted(d.glob('*.png'))[:n]: shutil.copy(f, root/split/d.name/f.name)
    return root


RUN = ('--epochs', 4, '--size', 16, '--bs', 8, '--precision', '32')  # one precision for every run compared: on a busy machine the CPU probe decides per run


def saved(out: Path) -> dict:
    return torch.load(out/'checkpoint.pth', map_location='cpu', weights_only=True)


def max_abs_diff(a: dict, b: dict) -> float:
    "Largest difference between two checkpoints' weights and optimiser states (whose step counts and hyper-parameters must be equal)"
    assert a['epoch'] == b['epoch'] and list(a['model']) == list(b['model']) and len(a['opt']['state']) == len(b['opt']['state'])
    assert a['opt']['hypers'] == b['opt']['hypers']
    assert [{k: v for k, v in s.items() if not torch.is_tensor(v)} for s in a['opt']['state']] == \
           [{k: v for k, v in s.items() if not torch.is_tensor(v)} for s in b['opt']['state']]  # steps, weight-decay flags
    w = max((a['model'][k].double() - b['model'][k].double()).abs().max().item() for k in a['model'])
    o = max((x.double() - sb[k].double()).abs().max().item()
            for sa, sb in zip(a['opt']['state'], b['opt']['state']) for k, x in sa.items() if torch.is_tensor(x))
    return max(w, o)


def wait_for(cond, proc, timeout=300):
    end = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()[-2000:]}"
        assert time.time() < end, 'timed out'
        time.sleep(0.02)


def epochs_done(out: Path) -> int:
    try: return len(json.loads((out/'metrics.json').read_text())['epochs'])
    except (OSError, ValueError, KeyError): return 0


def test_killed_run_resumes_to_the_same_weights(small, tmp_path, capsys):
    "A run killed in its own process, then resumed in this one: the same weights as an uninterrupted run"
    status, text = here('train', '--data', small, '--out', tmp_path/'ref', *RUN, capsys=capsys)
    assert status == 0, text[-3000:]
    p = cli('train', '--data', small, '--out', tmp_path/'cut', *RUN)
    wait_for(lambda: (tmp_path/'cut'/'checkpoint.pth').exists() and epochs_done(tmp_path/'cut') >= 1, p)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    k = saved(tmp_path/'cut')['epoch']
    assert 1 <= k < 4 and not (tmp_path/'cut'/'export.pkl').exists()
    status, text = here('train', '--data', small, '--out', tmp_path/'cut', *RUN, '--resume', capsys=capsys)
    assert status == 0, text[-3000:]
    a, b = saved(tmp_path/'ref'), saved(tmp_path/'cut')
    diff = max_abs_diff(a, b)
    print(f"killed after epoch {k - 1} of 0..3; resumed; max abs difference of weights and optimiser state: {diff:.1e}")
    assert diff <= 1e-6, diff
    m_ref, m = (json.loads((tmp_path/d/'metrics.json').read_text()) for d in ('ref', 'cut'))
    assert m['resumed_from_epoch'] == k
    strip = lambda rows: [{n: v for n, v in r.items() if n != 'seconds'} for r in rows]
    assert strip(m['epochs']) == strip(m_ref['epochs']) and m['accuracy'] == m_ref['accuracy']
    assert a['recorder']['losses'] == b['recorder']['losses']  # the loss plot covers the whole run


def test_kill_during_a_checkpoint_save_leaves_the_previous_one(small, tmp_path, capsys):
    "The second save writes half its bytes, then waits to be killed: checkpoint.pth stays the first one, and resumes"
    code = ("import os, sys, time, torch\nsave = torch.save\ncalls = []\n"
            "def slow(obj, f, *a, **k):\n"
            "    calls.append(1)\n"
            "    if len(calls) < 2: return save(obj, f, *a, **k)\n"
            "    save(obj, f, *a, **k); os.truncate(f, os.path.getsize(f) // 2)\n"
            f"    open({str(tmp_path/'saving')!r}, 'w').close(); time.sleep(600)\n"
            "torch.save = slow\nfrom xresnet_fa.cli import main\n"
            f"sys.exit(main(['train', '--data', {str(small)!r}, '--out', {str(tmp_path/'out')!r}, '--epochs', '4', '--size', '16', '--bs', '8']))\n")
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (tmp_path/'saving').exists(), p)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    [half] = (tmp_path/'out').glob('checkpoint.pth.*.tmp')  # the half-written save, under its own new name
    with pytest.raises(Exception): torch.load(half, weights_only=True)
    assert saved(tmp_path/'out')['epoch'] == 1  # the previous checkpoint, whole
    status, text = here('train', '--data', small, '--out', tmp_path/'out', *RUN, '--resume', capsys=capsys)
    assert status == 0, text[-3000:]
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['resumed_from_epoch'] == 1 and [e['epoch'] for e in m['epochs']] == [0, 1, 2, 3]


def test_fine_tune_resumed_inside_either_fit_equals_uninterrupted(small, tmp_path):
    "--pretrained runs fastai's fine_tune as a frozen fit then an unfrozen one; a resume may fall in either"
    from xresnet_fa import xresnet18
    torch.manual_seed(0); torch.save(xresnet18().state_dict(), tmp_path/'w.pth')
    run = dict(data=small, epochs=2, size=16, bs=8, pretrained=str(tmp_path/'w.pth'))
    full = train(**run, out=tmp_path/'full')
    assert [e['epoch'] for e in full['epochs']] == [0, 1, 2]  # the frozen epoch, then 2
    for stop in (0, 1):
        class Stop(RunCallback):  # RunCallback: epochs numbered across the run's two fits
            order = 80  # after the checkpoint of the epoch
            def after_epoch(self):
                if self.run_epoch == stop: raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt): train(**run, out=tmp_path/f'cut{stop}', cbs=[Stop()])
        assert saved(tmp_path/f'cut{stop}')['epoch'] == stop + 1
        train(**run, out=tmp_path/f'cut{stop}', resume=True)
        assert max_abs_diff(saved(tmp_path/'full'), saved(tmp_path/f'cut{stop}')) <= 1e-6


def test_resume_with_lr_find_equals_uninterrupted_and_a_finished_run_resumes_as_is(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working folder (fastai's lr_find saves weights under ./models)
    run = dict(data=small, epochs=3, size=16, bs=8, precision='32', lr='find')  # one precision for the runs compared (the probe may decide per run)
    train(**run, out=tmp_path/'full')
    class Stop(RunCallback):
        order = 80
        def after_epoch(self):
            if self.run_epoch == 1: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): train(**run, out=tmp_path/'cut', cbs=[Stop()])
    m = train(**run, out=tmp_path/'cut', resume=True)
    assert m['resumed_from_epoch'] == 2 and max_abs_diff(saved(tmp_path/'full'), saved(tmp_path/'cut')) <= 1e-6
    again = train(**run, out=tmp_path/'cut', resume=True)  # all epochs done: nothing trains, the records and export are rewritten
    assert again['resumed_from_epoch'] == 3 and again['accuracy'] == m['accuracy'] and (tmp_path/'cut'/'export.pkl').exists()
    assert max_abs_diff(saved(tmp_path/'full'), saved(tmp_path/'cut')) <= 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cut', 'full']


def test_resume_refuses_other_settings(small, tmp_path, capsys):
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--epochs', '1', '--size', '8', '--bs', '8']) == 0
    capsys.readouterr()
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--epochs', '2', '--size', '8', '--bs', '16', '--resume']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and '--epochs 1 there, 2 here' in err and '--bs 8 there, 16 here' in err, err


def test_resume_without_a_checkpoint_is_one_line(small, tmp_path, capsys):
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--resume']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no checkpoint at' in err, err


def test_corrupt_checkpoint_is_refused(small, tmp_path, capsys):
    (tmp_path/'out').mkdir(); (tmp_path/'out'/'checkpoint.pth').write_bytes(b'PK\x03\x04 not really a zip')
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--resume']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'not a readable checkpoint' in err, err


class RunsCode:
    "Unpickling this runs a shell command"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_checkpoint_that_would_run_code_is_refused_and_nothing_runs(small, tmp_path, capsys):
    (tmp_path/'out').mkdir()
    torch.save({'format': 'xresnet_fa-run-1', 'payload': RunsCode(tmp_path/'pwned')}, tmp_path/'out'/'checkpoint.pth')
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--resume']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'refused' in err and 'which could run code when loaded' in err and 'weights_only=True' in err, err
    assert not (tmp_path/'pwned').exists()


# -- non-finite loss --------------------------------------------------------------------------------------------

class CorruptBatch(Callback):
    "Turns the inputs of training batch 3 of epoch 1 into NaN, as a corrupt batch would"
    def before_batch(self):
        if self.training and self.epoch == 1 and self.iter == 2: self.learn.xb = (self.xb[0]*float('nan'),)


def test_non_finite_loss_stops_naming_epoch_and_batch_and_keeps_the_checkpoint(small, tmp_path):
    with pytest.raises(TrainingError) as e: train(small, epochs=3, size=16, bs=8, out=tmp_path/'out', cbs=[CorruptBatch()])
    msg = str(e.value)
    assert 'the training loss is nan at epoch 1, training batch 3 of 15' in msg and 'after epoch 0' in msg, msg
    state = saved(tmp_path/'out')
    assert state['epoch'] == 1 and all(torch.isfinite(v.float()).all() for v in state['model'].values())
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['error'] == msg and len(m['epochs']) == 1 and not (tmp_path/'out'/'export.pkl').exists()
    m = train(small, epochs=3, size=16, bs=8, lr=1e-3, out=tmp_path/'out', resume=True)  # the kept checkpoint resumes, at a lower rate
    assert saved(tmp_path/'out')['epoch'] == 3 and m['resume_changes'] == {'lr': {'was': 5e-3, 'now': 1e-3}}


def test_non_finite_loss_from_the_command_line_is_one_line_and_exit_1(small, tmp_path):
    "The real command, with the corrupt batch added to its callbacks"
    code = ("import sys, xresnet_fa.train as t\nfrom test_reliability import CorruptBatch\nrun = t.train\n"
            "t.train = lambda *a, **k: run(*a, **{**k, 'cbs': [CorruptBatch()]})\nfrom xresnet_fa.cli import main\n"
            f"sys.exit(main(['train', '--data', {str(small)!r}, '--out', {str(tmp_path/'out')!r}, '--epochs', '3', '--size', '16', '--bs', '8']))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent)
    assert r.returncode == 1, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('xresnet-fa: training stopped: the training loss is nan at epoch 1, training batch 3 of 15'), r.stderr[-3000:]
    assert 'Traceback' not in r.stderr and f"is {tmp_path/'out'/'checkpoint.pth'}" in last


def test_counting_leaves_the_models_mode_alone():
    "summary and count_macs run slices of the model in eval mode on the meta device; an eval model stays in eval mode (it did not: silent train-mode BatchNorm)"
    from xresnet_fa import xresnet18
    from xresnet_fa.xresnet import count_macs, summary
    m = xresnet18().eval()
    summary(m, 32); count_macs(m[:-1], 32); count_macs(m.stage_1, 8, c_in=64)
    assert not any(part.training for part in m.modules())
    m.train(); m.stage_2.eval()
    summary(m, 32)
    assert m.training and m.stage_1.training and not any(part.training for part in m.stage_2.modules())
