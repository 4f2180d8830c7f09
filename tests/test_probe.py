"""The CPU bf16 probe (issue 22, point 1): CPU time, so a busy machine reaches the idle decision; answers near the threshold or taken
while busy are used once and not kept; a run's first epoch corrects a kept answer it contradicts; `xresnet-fa speed` shows and clears."""
import json, os, subprocess, sys, time
import pytest, torch
from xresnet_fa.cli import main
from xresnet_fa.fast import (BF16_MIN_SPEEDUP, MIN_SHARE, Workload, _keep, _probe_file, _probe_key, clear_probe, probe_answers,
                             probe_bf16, speed_defaults)
from xresnet_fa.callbacks import StepSpeed
from test_reliability import small  # noqa: F401 (a fixture)


def stand_in(k: float, ms: float=20):
    """A step that spins for `ms` of its thread's CPU time in float32 and `ms*k` in bf16: bf16 is 1/k times as fast.
    (Not a loop of fixed length: a neighbour on the same physical core slows each step without taking the thread's time.)"""
    def step(bf16: bool):
        t = time.thread_time() + ms/1000*(k if bf16 else 1)
        while time.thread_time() < t: pass
    return step


@pytest.fixture
def burner():
    "A spinning process per core, for the test's duration: a busy machine"
    code = "import time\nt = time.time()\nwhile time.time() - t < 120: pass"
    procs = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(2*(os.cpu_count() or 1))]  # twice the cores: each of us gets under half a core
    time.sleep(1)  # the scheduler shares the cores out fairly once the spinners have run a while (a fresh one starts with credit)
    yield procs
    for p in procs: p.kill(); p.wait()


def decide(k, cache, ms=20): return probe_bf16(Workload(f'stand-in {k}'), cache, stand_in(k, ms))


@pytest.mark.parametrize('k', [0.5, 2.0], ids=['bf16-faster', 'bf16-slower'])
def test_busy_probe_decides_as_idle(k, tmp_path, request):
    idle = decide(k, tmp_path/'idle')
    request.getfixturevalue('burner')
    busy = decide(k, tmp_path/'busy', ms=60)  # longer steps: the share is of a fair scheduler's slices, not of the first few
    print(f"\nbf16 {1/k:.1f}x: idle {idle['ratio']} (share {idle['share']}), busy {busy['ratio']} (share {busy['share']}, kept {busy['kept']})")
    assert (idle['ratio'] >= BF16_MIN_SPEEDUP) == (busy['ratio'] >= BF16_MIN_SPEEDUP) == (k < 1), (idle, busy)
    assert busy['share'] < MIN_SHARE and busy['busy'] and not busy['kept'] and not probe_answers(tmp_path/'busy')[1], busy


def test_near_threshold_is_used_once_not_kept(tmp_path):
    a = decide(1/BF16_MIN_SPEEDUP, tmp_path)
    assert a['new'] and not a['kept'] and not probe_answers(tmp_path)[1], a
    b = decide(1/BF16_MIN_SPEEDUP, tmp_path)
    assert b['new'], b  # measured again, not read back


def test_kept_answer_read_back_and_cleared(tmp_path):
    a = decide(0.5, tmp_path)
    if not a['kept']: pytest.skip(f"this machine is busy (thread share {a['share']}): nothing to read back")
    b = decide(0.5, tmp_path)
    assert not b.get('new') and b['ratio'] == a['ratio']
    assert main(['speed', '--cache', str(tmp_path)]) == 0
    assert clear_probe(tmp_path) == 1 and probe_answers(tmp_path)[1] == {}


def test_speed_defaults_says_why(tmp_path, monkeypatch):
    "The reason names the workload and whether the answer was kept"
    from xresnet_fa import fast
    monkeypatch.setattr(fast, 'native_bf16', lambda d: 'AVX512-BF16')
    monkeypatch.setattr(fast, '_workload_step', lambda w: stand_in(1/BF16_MIN_SPEEDUP))
    p, cl, why = speed_defaults(torch.device('cpu'), cache=tmp_path, workload=Workload('xresnet18', 16, 4))
    assert 'training step of xresnet18 at 16 px, batch 4' in why and 'for this run only, not kept' in why, why


def test_step_speed_corrects_a_contradicted_answer(small, tmp_path):
    "A kept answer says bf16 is 2x with float32 steps of 1000 s; a float32 run whose steps take far less corrects it"
    from fastai.learner import Learner
    from xresnet_fa.folder import check_folder, folder_dls
    from xresnet_fa.xresnet import PRESETS
    work = Workload('xresnet18', 16, 8)
    _keep(_probe_file(tmp_path), {_probe_key(work): dict(ratio=2.0, pairs=3, f32_s=1000.0, bf16_s=500.0, share=1.0, clear=True, busy=False)})
    dls = folder_dls(check_folder(small), size=16, bs=8)
    cb = StepSpeed(work, '32', tmp_path)
    learn = Learner(dls, PRESETS['xresnet18'](n_out=10), cbs=cb)
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    a = probe_answers(tmp_path)[1][_probe_key(work)]
    assert a['corrected'] and a['ratio'] < BF16_MIN_SPEEDUP and 0 < cb.seconds < 1000 and 'corrected to' in cb.note, (a, cb.note)


def test_speed_command(tmp_path, capsys):
    _keep(_probe_file(tmp_path), {'cpu | torch x | 2 threads | training step of xresnet50 at 128 px, batch 32, 3 channels':
                                  dict(ratio=1.79, pairs=3, f32_s=1.0, bf16_s=0.56, share=0.99, clear=True, busy=False)})
    assert main(['speed', '--cache', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"kept in {tmp_path/'bf16_probe.json'}: 1" in out and '1.79x -> bf16' in out and 'xresnet50 at 128 px' in out, out
    assert main(['speed', '--clear', '--cache', str(tmp_path)]) == 0 and 'forgot 1 kept' in capsys.readouterr().out
    assert main(['speed', '--cache', str(tmp_path)]) == 0 and ': none' in capsys.readouterr().out
