"""A second real-image folder, without the internet: grey texture patches cut from the photographs that ship inside scikit-image.

Six classes, one photograph each: brick, grass, gravel (Brodatz-style textures), hubble (the Hubble deep field), tissue
(immunohistochemistry) and page (a scanned page of text). All are made grey, so colour gives nothing away. Training patches come
from the left 70% of each photograph and validation patches from the right 30%: no validation pixel is ever seen in training.
Patches are `--patch` pixels square at random places (a fixed seed), written as PNG files in the ImageFolder layout
(train/CLASS, valid/CLASS) that `xresnet-fa train --data` and `ImageDataLoaders.from_folder` read.
Needs scikit-image (`pip install scikit-image`). Run: python benchmarks/textures.py OUT [--patch 48] [--train 200] [--valid 60]
"""
import argparse
from pathlib import Path
import numpy as np
from PIL import Image

SOURCES = dict(brick='brick', grass='grass', gravel='gravel', hubble='hubble_deep_field', tissue='immunohistochemistry', page='page')


def textures_folder(out, patch=48, n_train=200, n_valid=60, seed=0) -> Path:
    "Write the folder to `out` (train/ and valid/, a subfolder per class) and return its path"
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.util import img_as_ubyte
    rng, out = np.random.default_rng(seed), Path(out)
    for name, fn in SOURCES.items():
        im = getattr(data, fn)()
        im = img_as_ubyte(rgb2gray(im) if im.ndim == 3 else im)
        cut = int(im.shape[1]*0.7)
        for split, part, n in (('train', im[:, :cut], n_train), ('valid', im[:, cut:], n_valid)):
            h, w = part.shape
            if h < patch or w < patch: raise ValueError(f"{fn} gives a {split} part of {h}x{w}, smaller than the {patch}-px patch")
            d = out/split/name; d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
                Image.fromarray(part[y:y + patch, x:x + patch]).save(d/f'{i:04d}.png')
    return out


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out')
    p.add_argument('--patch', type=int, default=48)
    p.add_argument('--train', type=int, default=200, help='training patches per class')
    p.add_argument('--valid', type=int, default=60, help='validation patches per class')
    a = p.parse_args()
    print(textures_folder(a.out, a.patch, a.train, a.valid))
