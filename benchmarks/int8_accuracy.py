"""int8 against float32 accuracy, on real image folders: what `fast_inference(precision='int8')` costs in accuracy.

For each folder (default: the digits, and the texture patches of benchmarks/textures.py where scikit-image is installed), and
each seed: `xresnet-fa train` a model with its defaults, then classify the validation images with the folded float32 model and
with the int8 one (PT2E + X86InductorQuantizer, calibrated on --calibration training batches, compiled by Inductor). Reported:
accuracy of each, the difference in points, and how many images the two label differently.
Run: python benchmarks/int8_accuracy.py [--data D ...] [--arch xresnet50] [--size 64] [--epochs 5] [--seeds 3] [--json F]
"""
import argparse, json, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(data, arch, size, bs, epochs, seed, n_cal, tmp):
    import torch
    from fastai.learner import load_learner
    from xresnet_fa.fast import fast_inference
    from xresnet_fa.folder import check_folder, folder_dls
    out = Path(tmp)/f'{Path(data).name}-{seed}'
    cmd = [sys.executable, '-m', 'xresnet_fa', 'train', '--data', data, '--arch', arch, '--size', size, '--bs', bs,
           '--epochs', epochs, '--seed', seed, '--out', out, '--overwrite']
    subprocess.run(list(map(str, cmd)), check=True, capture_output=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = load_learner(out/'export.pkl')
    dls = folder_dls(check_folder(data), size=size, bs=bs)
    cal = [x.as_subclass(torch.Tensor) for (x, _), _ in zip(dls.train, range(n_cal))]
    xb, yb = zip(*((x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)) for x, y in dls.valid))
    f32 = fast_inference(learn.model, compile=False, precision='32')
    start = time.perf_counter(); i8 = fast_inference(learn.model, precision='int8', calibration=cal)
    with torch.inference_mode():
        i8(xb[0]); compile_s = time.perf_counter() - start
        p32, p8 = (torch.cat([m(x).argmax(1) for x in xb]) for m in (f32, i8))
    y = torch.cat(yb)
    return dict(seed=seed, float32=(p32 == y).float().mean().item(), int8=(p8 == y).float().mean().item(),
                disagree=int((p32 != p8).sum()), images=len(y), int8_compile_s=round(compile_s, 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', nargs='+', help='image folders (train/ and valid/); default: the digits and the texture patches')
    p.add_argument('--arch', default='xresnet50')
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--calibration', type=int, default=4, help='training batches that calibrate int8')
    p.add_argument('--json')
    a = p.parse_args()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not a.data:
            from xresnet_fa.data import digits_folder
            a.data = [str(digits_folder())]
            try:
                sys.path.insert(0, str(HERE)); from textures import textures_folder
                a.data.append(str(textures_folder(Path(tmp)/'textures')))
            except ImportError as e: print(f"texture patches left out ({e}): pip install scikit-image")
        for d in a.data:
            rows = res[d] = []
            for seed in range(a.seeds):
                r = measure(d, a.arch, a.size, a.bs, a.epochs, seed, a.calibration, tmp); rows.append(r)
                print(f"{Path(d).name} seed {seed}: float32 {r['float32']:.2%}, int8 {r['int8']:.2%} "
                      f"({100*(r['int8'] - r['float32']):+.2f} points; {r['disagree']} of {r['images']} labelled differently; "
                      f"int8 compiled in {r['int8_compile_s']} s)", flush=True)
            drop = [100*(r['int8'] - r['float32']) for r in rows]
            print(f"{Path(d).name}: {a.arch} at {a.size} px, {a.epochs} epochs: int8 - float32 = {statistics.median(drop):+.2f} points "
                  f"(median of {a.seeds} seeds; {min(drop):+.2f} to {max(drop):+.2f})", flush=True)
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == '__main__': main()
