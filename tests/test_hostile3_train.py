"""Issue 23, the training side: links planted in --out, runs replaced or resumed from elsewhere, --workers, damaged run
checkpoints, weights files that are not plain tensors, numpy numbers, a proxy that is not there, output off a terminal,
and what metrics.json says after an interruption. Each case asserts the exit status, one line without a traceback, and the
files left on disk."""
import hashlib, json, os, random, shutil, signal, socket, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from xresnet_fa.cli import main
from xresnet_fa.callbacks import RunCallback
from xresnet_fa.train import train, usable_cores, WORKERS_PER_CORE
from test_reliability import cli, here, images
from test_hostile import one_line, no_tmp_files

TINY = ('--epochs', '1', '--size', '8', '--bs', '4')


def digest(p: Path) -> str: return hashlib.sha1(p.read_bytes()).hexdigest()


def run(data, out, capsys, *extra):
    "`xresnet-fa train` in this process on the tiny setting: (status, stderr)"
    status = main(['train', '--data', str(data), '--out', str(out), *TINY, *map(str, extra)])
    return status, capsys.readouterr().err


@pytest.fixture(scope='module')
def data(tmp_path_factory): return images(tmp_path_factory.mktemp('data')/'d')


@pytest.fixture(scope='module')
def finished(data, tmp_path_factory):
    "A finished one-epoch run: its folder, kept read-only by the tests (they copy it)"
    out = tmp_path_factory.mktemp('finished')/'out'
    train(data, epochs=1, size=8, bs=4, out=out)
    return out


class StopAfter(RunCallback):
    order = 80  # after the epoch's checkpoint
    def __init__(self, epoch): self.stop = epoch
    def after_epoch(self):
        if self.run_epoch == self.stop: raise KeyboardInterrupt


@pytest.fixture(scope='module')
def unfinished(data, tmp_path_factory):
    "A two-epoch run stopped after its first epoch"
    out = tmp_path_factory.mktemp('unfinished')/'out'
    with pytest.raises(KeyboardInterrupt): train(data, epochs=2, size=8, bs=4, out=out, cbs=[StopAfter(0)])
    return out


# -- defect 3: nothing is written through a link we did not make ----------------------------------------------

@pytest.mark.parametrize('name', ['.lock', 'checkpoint.pth', 'metrics.json', 'export.pkl', 'checkpoint.pth.tmp', 'metrics.json.tmp',
                                  'export.pkl.tmp'])
def test_planted_link_in_out_is_refused_and_its_target_untouched(data, tmp_path, capsys, name):
    out, victim = tmp_path/'out', tmp_path/'victim'
    out.mkdir(); victim.write_text('my thesis')
    (out/name).symlink_to(victim)
    status, err = run(data, out, capsys)
    one_line(err, 2, status, f'--out {out}: {name} is a symbolic link (to {victim})', 'remove it')
    assert victim.read_text() == 'my thesis' and sorted(p.name for p in out.iterdir()) == [name]


def test_planted_hard_link_as_lock_is_refused(data, tmp_path, capsys):
    out, victim = tmp_path/'out', tmp_path/'victim'
    out.mkdir(); victim.write_text('my thesis')
    os.link(victim, out/'.lock')
    status, err = run(data, out, capsys)
    one_line(err, 2, status, f'--out {out}: .lock is a hard link to another file')
    assert victim.read_text() == 'my thesis'


def test_run_files_are_new_files_not_written_through_the_old_names(data, tmp_path, capsys):
    "A run's temporary files are created exclusively: a finished run leaves no .tmp name, and its files are plain ones"
    out = tmp_path/'out'
    status, err = run(data, out, capsys)
    assert status == 0, err
    no_tmp_files(out)
    assert all(p.is_file() and not p.is_symlink() for p in out.iterdir())
    assert (out/'metrics.json').stat().st_mode & 0o777 == 0o666 & ~_umask()  # as open() makes them, not mkstemp's 0600


def _umask():
    m = os.umask(0o022); os.umask(m); return m


# -- defect 8, 15, requirement 2: no run is lost without asking -----------------------------------------------

def test_resume_from_another_folder_is_refused_and_the_run_in_out_kept(data, tmp_path, capsys, unfinished, finished):
    a = tmp_path/'a'; shutil.copytree(unfinished, a)
    before = {p.name: digest(p) for p in a.iterdir() if p.is_file()}
    status, err = run(data, a, capsys, '--epochs', '2', '--resume', finished/'checkpoint.pth')
    one_line(err, 2, status, f'--resume {finished/"checkpoint.pth"}: --resume continues only the run in --out ({a})',
             f'--out {finished} --resume')
    assert {p.name: digest(p) for p in a.iterdir() if p.is_file()} == before
    status, err = run(data, a, capsys, '--epochs', '2', '--resume', a/'checkpoint.pth')  # the run in --out, named: continues
    assert status == 0 and json.loads((a/'metrics.json').read_text())['resumed_from_epoch'] == 1, err


@pytest.mark.parametrize('flags', [(), ('--arch', 'xresnet34'), ('--epochs', '2', '--seed', '3')], ids=['same', 'other-arch', 'other-epochs'])
def test_finished_run_is_not_replaced_without_overwrite(data, tmp_path, capsys, finished, flags):
    out = tmp_path/'out'; shutil.copytree(finished, out)
    before = {p.name: digest(p) for p in out.iterdir() if p.is_file()}
    status, err = run(data, out, capsys, *flags)
    one_line(err, 2, status, f'--out {out} holds a finished run (1 epoch in checkpoint.pth)', '--overwrite')
    assert {p.name: digest(p) for p in out.iterdir() if p.is_file()} == before


def test_finished_run_without_its_checkpoint_is_kept_and_overwrite_replaces_it_whole(data, tmp_path, capsys, finished):
    out = tmp_path/'out'; shutil.copytree(finished, out)
    (out/'checkpoint.pth').unlink()
    status, err = run(data, out, capsys)
    one_line(err, 2, status, f'--out {out} holds a finished run (its learner, export.pkl)', '--overwrite')
    status, err = run(data, out, capsys, '--overwrite', '--lr', 'find')  # lr_find.png: the new run's
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'checkpoint.pth', 'confusion_matrix.png', 'export.pkl', 'loss.png',
                                                     'lr_find.png', 'metrics.json']


# -- defect 2: --workers ------------------------------------------------------------------------------------------

def test_workers_beyond_the_machine_are_refused_and_above_its_cores_warned(data, tmp_path, capsys):
    most = WORKERS_PER_CORE*usable_cores()
    status, err = run(data, tmp_path/'out', capsys, '--workers', 100000)
    one_line(err, 2, status, f'--workers 100000: at most {most} ({WORKERS_PER_CORE} per core; this process may use {usable_cores()})')
    assert not (tmp_path/'out').exists()
    status, err = run(data, tmp_path/'out', capsys, '--workers', usable_cores() + 1, '--bs', 999)  # allowed, warned, then refused for --bs
    assert f'warning: --workers {usable_cores() + 1} is more than the {usable_cores()} cores' in err
    one_line(err, 2, status, '--bs 999 is larger than')


# -- defect 14: a run checkpoint is checked whole -----------------------------------------------------------------

@pytest.mark.parametrize('change, why', [(dict(epoch=99), "epoch 99 is not between 0 and the run's 1 epochs"),
                                         (dict(epoch=-1), "epoch -1 is not between 0 and the run's 1 epochs"),
                                         (dict(epoch='1'), "epoch '1' is not between"),
                                         (dict(settings=None), 'its settings are not a dict'),
                                         (dict(model={'w': 3}), 'its model is not a dict of tensors'),
                                         ('settings', 'it lacks settings'), ('recorder', 'it lacks recorder')])
def test_damaged_run_checkpoint_is_one_line_on_resume_and_on_a_fresh_run(data, tmp_path, capsys, finished, change, why):
    out = tmp_path/'out'; shutil.copytree(finished, out)
    state = torch.load(out/'checkpoint.pth', weights_only=True)
    state = {k: v for k, v in state.items() if k != change} if isinstance(change, str) else {**state, **change}
    torch.save(state, out/'checkpoint.pth')
    before = digest(out/'checkpoint.pth')
    status, err = run(data, out, capsys, '--resume')
    one_line(err, 2, status, f'--resume {out/"checkpoint.pth"}: a damaged checkpoint: {why}')
    status, err = run(data, out, capsys)
    one_line(err, 2, status, f'--out {out}: its {out/"checkpoint.pth"}: a damaged checkpoint: {why}', '--overwrite')
    assert digest(out/'checkpoint.pth') == before


# -- defect 13, 21: weights that are not a state dict of tensors ------------------------------------------------

@pytest.mark.parametrize('extra, why', [({'step': 5}, "'step' holds 5 (int), not a tensor"), ({5: torch.zeros(1)}, 'the key 5 (int) is not a tensor name')])
def test_pretrained_file_with_a_non_tensor_entry_is_one_line(data, tmp_path, capsys, extra, why):
    from xresnet_fa import xresnet18
    torch.save({**xresnet18().state_dict(), **extra}, tmp_path/'w.pth')
    status, err = run(data, tmp_path/'out', capsys, '--pretrained', tmp_path/'w.pth')
    one_line(err, 2, status, f"pretrained='{tmp_path/'w.pth'}': not a state dict of tensors: {why}")
    assert not (tmp_path/'out'/'checkpoint.pth').exists()


@pytest.mark.parametrize('arch', ['xresnet18', 'xresnext50', 'xse_resnext26'])
def test_empty_pretrained_path_never_means_random_weights(arch):
    from xresnet_fa.family import FAMILY
    for empty in ('', ' '):
        with pytest.raises(ValueError, match="pretrained=.* is an empty path: give a weights file"): FAMILY[arch](pretrained=empty)


# -- defect 23: numpy numbers -------------------------------------------------------------------------------------

def test_numpy_numbers_are_taken_as_the_python_numbers_they_hold(data, tmp_path):
    m = train(data, epochs=np.int64(1), size=np.int32(8), bs=np.int64(4), lr=np.float32(0.01), seed=np.uint8(3), valid_pct=np.float64(0.25),
              out=tmp_path/'out')
    saved = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert saved['lr'] == m['lr'] == float(np.float32(0.01)) and (saved['size'], saved['bs'], saved['seed']) == (8, 4, 3), saved


# -- defect 12: names too long ------------------------------------------------------------------------------------

@pytest.mark.parametrize('flag', ['--out', '--data', '--resume', '--pretrained'])
def test_a_name_over_255_bytes_is_one_line(data, tmp_path, capsys, flag):
    long = tmp_path/('é'*150)/'x'  # 300 bytes in UTF-8
    args = {'--out': ['--data', data, '--out', long], '--data': ['--data', long, '--out', tmp_path/'out'],
            '--resume': ['--data', data, '--out', tmp_path/'out', '--resume', long], '--pretrained': ['--data', data, '--out', tmp_path/'out', '--pretrained', long]}[flag]
    status = main(['train', *map(str, args), *TINY])
    one_line(capsys.readouterr().err, 2, status, f'{flag}: the name', 'is 300 bytes long; file systems allow 255 bytes per name')


# -- defect 17: an unreachable proxy --------------------------------------------------------------------------------

def test_pretrained_true_behind_a_proxy_that_is_not_there_fails_within_seconds(tmp_path):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]  # nothing listens there now
    code = ("import time\nfrom xresnet_fa.weights import imagenet_state_dict\nstart = time.perf_counter()\n"
            "try: imagenet_state_dict(18)\nexcept RuntimeError as e: print(f'{time.perf_counter() - start:.1f}', e)\n")
    env = {**os.environ, 'HF_HUB_CACHE': str(tmp_path/'empty'), 'HTTPS_PROXY': f'http://127.0.0.1:{port}', 'HTTP_PROXY': f'http://127.0.0.1:{port}'}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    seconds, _, message = r.stdout.strip().partition(' ')
    assert 'the hub cannot be reached' in message and float(seconds) < 30, r.stdout + r.stderr  # not minutes of retries (the first call imports huggingface_hub: 6.7 s once on CI)


# -- defect 16, 24: output off a terminal -------------------------------------------------------------------------

def test_off_a_terminal_one_line_per_epoch_no_bars_no_cuda_warning(data, tmp_path):
    p = subprocess.run([sys.executable, '-m', 'xresnet_fa', 'train', '--data', str(data), '--out', str(tmp_path/'out'), '--epochs', '2',
                        '--size', '8', '--bs', '4', '--precision', 'bf16'], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert '\r' not in p.stdout + p.stderr and '|' not in p.stdout and 'CUDA' not in p.stderr, (p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert len(lines) == 4 and lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time'], lines  # header, 2 epochs, summary
    assert [l.split()[0] for l in lines[1:3]] == ['0', '1'] and lines[3].startswith('valid accuracy'), lines
    assert 'training in bf16' in p.stderr


# -- requirement 5: what the run says matches what is on disk -----------------------------------------------------

def test_ctrl_c_during_the_first_checkpoint_save_records_no_epoch(data, tmp_path, capsys, monkeypatch):
    save = torch.save
    def interrupted(obj, f, *a, **k): save(obj, f, *a, **k); raise KeyboardInterrupt  # written whole, not yet renamed
    monkeypatch.setattr(torch, 'save', interrupted)
    status, err = run(data, tmp_path/'out', capsys)
    one_line(err, 130, status, 'no epoch completed, so there is no checkpoint')
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['epochs'] == [] and 'no epoch completed' in m['interrupted'] and not (tmp_path/'out'/'checkpoint.pth').exists()
    no_tmp_files(tmp_path/'out')


@pytest.mark.parametrize('resume', [False, True])
def test_ctrl_c_before_training_starts_is_one_line(data, tmp_path, capsys, monkeypatch, unfinished, resume):
    "Ctrl-C while the data loaders are made (the run holds --out, no callback yet): one line that says what is on disk"
    out = tmp_path/'out'
    if resume: shutil.copytree(unfinished, out)
    before = (out/'checkpoint.pth').read_bytes() if resume else None
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr('xresnet_fa.train.folder_dls', interrupted)
    status, err = run(data, out, capsys, '--epochs', '2', *(['--resume'] if resume else []))
    line = one_line(err, 130, status, 'xresnet-fa: interrupted before training started; ')
    if resume: assert line.endswith(f'the checkpoint {out/"checkpoint.pth"} is unchanged: resume with --resume') and (out/'checkpoint.pth').read_bytes() == before, line
    else: assert line.endswith('no epoch completed, so there is no checkpoint: run again to start afresh') and not (out/'checkpoint.pth').exists(), line


def test_pretrained_run_counts_its_frozen_epoch(data, tmp_path):
    from xresnet_fa import xresnet18
    torch.save(xresnet18().state_dict(), tmp_path/'w.pth')
    m = train(data, epochs=1, size=8, bs=4, pretrained=str(tmp_path/'w.pth'), out=tmp_path/'out')
    assert m['frozen_epochs'] == 1 and len(m['epochs']) == 2


def agree(out: Path, code: int, text: str):
    "metrics.json, the checkpoint and the message of an interrupted run say the same number of epochs"
    ckpt = torch.load(out/'checkpoint.pth', weights_only=True)['epoch'] if (out/'checkpoint.pth').exists() else 0
    rows = len(json.loads((out/'metrics.json').read_text())['epochs']) if (out/'metrics.json').exists() else 0
    assert rows <= ckpt, (rows, ckpt)  # no epoch recorded before its checkpoint is saved
    if code != -signal.SIGKILL:  # a message: it names the checkpoint's epoch, and metrics.json caught up with it
        line = one_line(text, code, code, 'interrupted')
        assert rows == ckpt and (f'(after epoch {ckpt - 1})' in line if ckpt else 'no epoch completed' in line), (line, rows, ckpt)
    return ckpt


@pytest.mark.parametrize('seed', range(3))
def test_interrupted_at_a_random_moment_disk_and_message_agree_and_resume_continues(data, tmp_path, seed, capsys):
    "SIGINT, SIGTERM or SIGKILL at a random moment, saves included: metrics.json, checkpoint and message agree; --resume then finishes"
    rng = random.Random(seed)
    sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[seed]  # each once; the moment at random
    out = tmp_path/'out'
    p = cli('train', '--data', data, '--out', out, '--epochs', 3, '--size', 8, '--bs', 4)
    end = time.time() + 300
    while not (out/'.lock').exists() and p.poll() is None and time.time() < end: time.sleep(0.01)  # the run holds --out: it is about to train
    time.sleep(rng.uniform(0, 2))
    p.send_signal(sig)
    text, _ = p.communicate(timeout=120)
    if p.returncode == 0 or 'valid accuracy' in text: return print(f"{sig.name}: the run had finished")  # it finished first (a signal after the run is the command line's, not the run's)
    ckpt = agree(out, p.returncode, text)
    print(f"{sig.name}: exit {p.returncode}, {ckpt} epochs in the checkpoint; resuming")
    if sig != signal.SIGKILL: no_tmp_files(out)
    status, text = here('train', '--data', data, '--out', out, '--epochs', 3, '--size', 8, '--bs', 4, *(['--resume'] if ckpt else []), capsys=capsys)
    assert status == 0, text[-3000:]
    assert [e['epoch'] for e in json.loads((out/'metrics.json').read_text())['epochs']] == [0, 1, 2]
