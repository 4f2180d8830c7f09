"""`xresnet-fa train` and `predict` against a hostile user and a hostile machine: link loops, FIFOs, absurd sizes, two runs
in one folder, a forgotten --resume, full and read-only disks, Ctrl-C and SIGTERM, odd names and odd images.
Each case asserts the exit status, a single line without a traceback, and the files left on disk."""
import contextlib, hashlib, json, os, resource, shutil, signal, struct, subprocess, sys, zlib
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from xresnet_fa.cli import main
from xresnet_fa.folder import check_folder, folder_dls
from xresnet_fa.checks import train_memory
from xresnet_fa.xresnet import xresnet18
from test_reliability import cli, here, images, run_train, wait_for, small  # noqa: F401 (small is a fixture)

RUN = ('--epochs', 4, '--size', 16, '--bs', 8)


def one_line(err: str, status: int, got: int, *expected: str):
    "The run ended with `status`, and printed exactly one line containing each of `expected`, no traceback"
    assert got == status, err[-3000:]
    lines = [l[l.index('xresnet-fa:'):] for l in err.strip().splitlines() if 'xresnet-fa:' in l]  # after a progress bar's \r
    assert 'Traceback' not in err and len(lines) >= 1 and all(e in lines[-1] for e in expected), err[-3000:]
    return lines[-1]


def no_tmp_files(out: Path): assert not list(out.glob('*.tmp')), sorted(p.name for p in out.iterdir())


def digest(p: Path) -> str: return hashlib.sha1(p.read_bytes()).hexdigest()


# -- hangs and runaway memory -------------------------------------------------------------------------------------

@contextlib.contextmanager
def time_limit(seconds: int):
    "Fail, rather than hang or grow for ever, when the block takes longer than `seconds`"
    def stop(*_): raise TimeoutError(f'still running after {seconds} s')
    old = signal.signal(signal.SIGALRM, stop); signal.alarm(seconds)
    try: yield
    finally: signal.alarm(0); signal.signal(signal.SIGALRM, old)


def test_symlink_loops_count_each_file_once(tmp_path, capsys):
    "A link back to the top and a link to a folder already read: 16 images stay 16, and the report names the links"
    data = images(tmp_path/'data')
    (data/'a'/'loop').symlink_to('..')
    (data/'b'/'again').symlink_to(data/'a')
    with time_limit(120): status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert m['n_train'] + m['n_valid'] == 16 and sorted(m['links_not_followed']) == ['a/loop', 'b/again'], m
    assert 'did not follow folder links' in err and 'a/loop -> ..' in err


def test_fifo_with_an_image_name_is_skipped_not_waited_on(tmp_path):
    data = images(tmp_path/'data')
    os.mkfifo(data/'a'/'f.png')
    p = cli('train', '--data', data, '--out', tmp_path/'out', '--epochs', 1, '--size', 8, '--bs', 4)
    text, _ = p.communicate(timeout=300)
    assert p.returncode == 0, text[-3000:]
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['skipped'] == [{'file': 'a/f.png', 'reason': 'not a regular file (a FIFO)'}] and m['n_train'] + m['n_valid'] == 16


def test_absurd_epochs_are_refused(tmp_path, capsys):
    status = main(['train', '--data', str(images(tmp_path/'data')), '--out', str(tmp_path/'out'), '--epochs', '1000000000'])
    one_line(capsys.readouterr().err, 2, status, '--epochs 1000000000: at most 10,000')
    assert not (tmp_path/'out').exists()


def test_a_size_that_cannot_fit_in_memory_is_refused_naming_what_would(tmp_path, capsys):
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    size = 64
    while train_memory(xresnet18, size, 8) < 2 * total: size *= 2  # more than twice this machine's memory
    status = main(['train', '--data', str(images(tmp_path/'data')), '--out', str(tmp_path/'out'), '--size', str(size), '--bs', '8'])
    line = one_line(capsys.readouterr().err, 2, status, f'--size {size} --bs 8: training xresnet18 needs about', 'would fit')
    fit = int(line.split('--size ')[2].split()[0])  # "... --size N with --bs 8 ..."
    assert 1 <= fit < size and train_memory(xresnet18, fit, 8) < total, line


# -- lost or overwritten output -----------------------------------------------------------------------------------

def test_second_run_refused_forgotten_resume_refused_dead_lock_blocks_nobody(small, tmp_path, capsys):
    out = tmp_path/'out'
    a = cli('train', '--data', small, '--out', out, *RUN)
    wait_for(lambda: (out/'checkpoint.pth').exists(), a)  # saved after epoch 0
    status = main(['train', '--data', str(small), '--out', str(out), *map(str, RUN)])  # while the first one runs
    one_line(capsys.readouterr().err, 2, status, f'--out {out}: another run (process {a.pid}) is writing there')
    a.send_signal(signal.SIGKILL); a.communicate(timeout=60)  # its lock dies with it
    before = digest(out/'checkpoint.pth')
    status = main(['train', '--data', str(small), '--out', str(out), *map(str, RUN)])  # forgot --resume
    one_line(capsys.readouterr().err, 2, status, f'--out {out} holds an unfinished run', '--resume continues it', '--overwrite')
    assert digest(out/'checkpoint.pth') == before
    status = main(['train', '--data', str(small), '--out', str(out), *map(str, RUN), '--resume'])
    assert status == 0, capsys.readouterr().err
    assert json.loads((out/'metrics.json').read_text())['resumed_from_epoch'] >= 1
    status = main(['train', '--data', str(small), '--out', str(out), '--epochs', '1', '--size', '16', '--bs', '8', '--overwrite'])
    assert status == 0 and 'resumed_from_epoch' not in json.loads((out/'metrics.json').read_text())


def test_out_inside_data_is_refused(tmp_path, capsys):
    data = images(tmp_path/'data')
    status = main(['train', '--data', str(data), '--out', str(data/'runs'), '--epochs', '1', '--bs', '4'])
    one_line(capsys.readouterr().err, 2, status, f'--out {data/"runs"} is inside --data {data}')
    assert not (data/'runs').exists()


@contextlib.contextmanager
def tmpfs(where: Path, size: str, ro: bool = False):
    "A real small file system (tmpfs) at `where` where this machine lets us mount one; else None"
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f"size={size}{',ro' if ro else ''}", 'tmpfs', str(where)], capture_output=True)
    try: yield where if r.returncode == 0 else None
    finally:
        if r.returncode == 0: subprocess.run(['umount', '-l', str(where)])


def test_full_disk_is_one_line_exit_1_and_the_previous_files_stay(small, tmp_path, capsys):
    "A finished run's files in --out; the disk then fills up, and a new run cannot save its first checkpoint"
    args = ('train', '--data', small, '--epochs', 1, '--size', 16, '--bs', 8)
    with tmpfs(tmp_path/'disk', '400m') as disk:
        out = (disk or tmp_path)/'out'
        status, text = here(*args, '--out', out, capsys=capsys)  # the finished run; only the second needs a process of its own
        assert status == 0, text[-3000:]
        kept = {p.name: digest(p) for p in out.iterdir() if p.is_file() and p.name != '.lock'}
        limit = None
        if disk:  # leave 8 MB free: metrics.json fits, a checkpoint (about 130 MB) does not
            st = os.statvfs(disk)
            (disk/'filler').write_bytes(b'\0' * (st.f_bavail * st.f_frsize - 8 * 2**20))
        else:  # no mount here: the operating system refuses writes past 8 MB in that process (EFBIG), mid-file
            limit = lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN), resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2**20,) * 2))
        second = subprocess.run([sys.executable, '-m', 'xresnet_fa', *map(str, args), '--out', str(out), '--overwrite', '--seed', '1'],
                                capture_output=True, text=True, preexec_fn=limit, timeout=300)
        line = one_line(second.stderr, 1, second.returncode, 'could not write', 'checkpoint.pth', 'previous version')
        print(f"{'tmpfs' if disk else 'RLIMIT_FSIZE'}: {line}")
        no_tmp_files(out)
        now = {p.name: digest(p) for p in out.iterdir() if p.is_file() and p.name != '.lock'}
        assert {k: v for k, v in now.items() if k != 'metrics.json'} == {k: v for k, v in kept.items() if k != 'metrics.json'}
        assert 'could not write' in json.loads((out/'metrics.json').read_text())['error']


def test_out_or_cache_that_cannot_be_written_is_one_line(tmp_path, capsys):
    data = images(tmp_path/'data')
    for argv, expected in ((['--data', str(data), '--out', '/proc/xresnet_fa_out'], '--out /proc/xresnet_fa_out: cannot write there'),
                           (['--cache', '/proc/xresnet_fa_cache'], '--cache /proc/xresnet_fa_cache: cannot write the digits there')):
        status = main(['train', *argv, '--epochs', '1', '--size', '8', '--bs', '4'])
        one_line(capsys.readouterr().err, 2, status, expected)
    with tmpfs(tmp_path/'ro', '1m', ro=True) as ro:
        if ro is None: pytest.skip('cannot mount a read-only tmpfs here; /proc covered the unwritable case')
        status = main(['train', '--data', str(data), '--out', str(ro/'out'), '--epochs', '1', '--size', '8', '--bs', '4'])
        one_line(capsys.readouterr().err, 2, status, f'--out {ro/"out"}: cannot write there (Read-only file system)')


# -- interruptions ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('sig, code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_end_with_one_line_and_resume(small, tmp_path, sig, code, capsys):
    out = tmp_path/'out'
    p = cli('train', '--data', small, '--out', out, *RUN)
    wait_for(lambda: (out/'checkpoint.pth').exists(), p)
    p.send_signal(sig)
    text, _ = p.communicate(timeout=120)
    line = one_line(text, code, p.returncode, 'xresnet-fa: interrupted at epoch', 'batch', 'the last checkpoint (after epoch',
                    'resume with --resume')
    no_tmp_files(out)
    k = torch.load(out/'checkpoint.pth', weights_only=True)['epoch']
    assert f'(after epoch {k - 1})' in line and json.loads((out/'metrics.json').read_text())['interrupted'] in line
    status, text = here('train', '--data', small, '--out', out, *RUN, '--resume', capsys=capsys)
    assert status == 0, text[-3000:]


# -- wrong data ---------------------------------------------------------------------------------------------------

def test_dot_folder_is_reported(tmp_path, capsys):
    data = images(tmp_path/'data', classes=('a', 'b', '.c'))
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0 and m['classes'] == ['a', 'b'] and m['hidden_folders'] == ['.c'], err
    assert 'ignored folders whose name starts with a dot: .c' in err


def test_names_that_are_not_utf8_train(tmp_path, capsys):
    data = images(tmp_path/'data')
    bad = os.fsdecode(b'caf\xe9')  # Latin-1 bytes: not valid UTF-8
    (data/'a').rename(data/bad)
    (data/bad/'0.png').rename(data/bad/os.fsdecode(b'\xff.png'))
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert m['classes'] == sorted([bad, 'b']) and m['n_train'] + m['n_valid'] == 16 and (tmp_path/'out'/'export.pkl').exists()


def test_16_bit_greyscale_keeps_its_contrast(tmp_path):
    "Two classes a 16-bit scanner tells apart (10,000 and 50,000 of 65,535) that 8-bit clipping would both turn white"
    for c, level in (('dark', 10_000), ('bright', 50_000)):
        (tmp_path/c).mkdir()
        for i in range(6): Image.fromarray(np.full((8, 8), level + 100*i, np.uint16)).save(tmp_path/c/f'{i}.png')
    assert Image.open(tmp_path/'dark'/'0.png').mode.startswith('I')
    dls = folder_dls(check_folder(tmp_path, valid_pct=0.25), size=8, bs=4)
    means = {dls.vocab[int(y)]: float(x.mean()) for xb, yb in [dls.one_batch()] for x, y in zip(xb, yb)}
    means.update({dls.vocab[int(y)]: float(x.mean()) for xb, yb in dls.valid for x, y in zip(xb, yb)})
    assert abs(means['dark'] - 10_000/65_535) < 0.02 and abs(means['bright'] - 50_000/65_535) < 0.02, means


def test_predict_on_a_decompression_bomb_is_one_line(small, tmp_path, capsys):
    assert main(['train', '--data', str(small), '--out', str(tmp_path/'out'), '--epochs', '1', '--size', '8', '--bs', '8']) == 0
    Image.new('L', (1, 1)).save(tmp_path/'one.png')
    png = bytearray((tmp_path/'one.png').read_bytes())
    png[16:24] = struct.pack('>II', 20000, 10000)
    png[29:33] = struct.pack('>I', zlib.crc32(bytes(png[12:29])))
    (tmp_path/'bomb.png').write_bytes(png)
    capsys.readouterr()
    status = main(['predict', '--model', str(tmp_path/'out'/'export.pkl'), str(tmp_path/'bomb.png')])
    one_line(capsys.readouterr().err, 2, status, 'bomb.png: not a readable image (DecompressionBombError')


# -- messages -----------------------------------------------------------------------------------------------------

def test_classes_named_train_and_valid(tmp_path, capsys):
    data = images(tmp_path/'data', classes=('train', 'valid'))
    status, err, _ = run_train(data, tmp_path/'out', capsys)
    one_line(err, 2, status, 'train/ and valid/ hold images directly', 'If train and valid are your classes, rename')


@pytest.mark.parametrize('flag', ['--out', '--data', '--cache'])
def test_empty_paths_are_refused(flag, capsys):
    status = main(['train', flag, '', '--epochs', '1'])
    one_line(capsys.readouterr().err, 2, status, f'{flag} is empty')


def test_resume_after_the_folder_moved_and_not_after_its_files_changed(small, tmp_path, capsys):
    data = tmp_path/'data'
    shutil.copytree(small, data)
    out = tmp_path/'out'
    p = cli('train', '--data', data, '--out', out, *RUN)
    wait_for(lambda: (out/'checkpoint.pth').exists(), p)
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    moved = shutil.move(data, tmp_path/'moved')
    one = next(Path(moved).rglob('*.png'))
    size = one.stat().st_size
    Image.new('RGB', (40, 40), 'red').save(one)  # other pixels, another size
    status = main(['train', '--data', str(moved), '--out', str(out), *map(str, RUN), '--resume'])
    one_line(capsys.readouterr().err, 2, status, '--data (its files)')
    shutil.copy(small/one.relative_to(moved), one)  # the same files again, in the moved folder
    assert one.stat().st_size == size
    status = main(['train', '--data', str(moved), '--out', str(out), *map(str, RUN), '--resume'])
    assert status == 0, capsys.readouterr().err
    m = json.loads((out/'metrics.json').read_text())
    assert m['resume_changes']['data']['now'] == str(Path(moved).resolve()) and m['resumed_from_epoch'] >= 1


@pytest.mark.parametrize('dtype', [torch.uint8, torch.float64, torch.float16])
def test_a_batch_of_another_dtype_names_both_dtypes(dtype):
    from xresnet_fa import xresnet18
    with pytest.raises(TypeError, match=rf'images of dtype {dtype} given to a model whose weights are torch.float32'):
        xresnet18(n_out=3)(torch.zeros(2, 3, 32, 32, dtype=dtype))
    assert xresnet18(n_out=3).to(dtype if dtype != torch.uint8 else torch.float32).eval()(
        torch.zeros(2, 3, 32, 32, dtype=dtype if dtype != torch.uint8 else torch.float32)).shape == (2, 3)


def test_sigterm_stops_every_rank_of_a_data_parallel_run(small, tmp_path):
    "torchrun forwards SIGTERM to both ranks; each ends with the one line, and no process is left"
    out = tmp_path/'out'
    p = subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '-m', 'xresnet_fa', 'train',
                          '--data', str(small), '--out', str(out), '--epochs', '20', '--size', '16', '--bs', '8'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    wait_for(lambda: (out/'checkpoint.pth').exists(), p)
    p.send_signal(signal.SIGTERM)
    text, _ = p.communicate(timeout=120)
    lines = [l[l.index('xresnet-fa:'):] for l in text.splitlines() if 'xresnet-fa: interrupted at epoch' in l]
    assert len(lines) == 2 and all('resume with --resume' in l for l in lines), text[-3000:]  # torchrun adds its own traceback
    no_tmp_files(out)
