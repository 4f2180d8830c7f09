"""Issue 23, folder layouts: nested images, split folders in any case and test/, labels from the class folder, duplicates,
float images, --valid-pct on a split folder, a damaged digits cache. Each case asserts the exit status, one line without a
traceback (or the run's report), and the files left on disk."""
import json, math, os, shutil
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from xresnet_fa.cli import main
from xresnet_fa.folder import check_folder, folder_dls, RGBImage
from test_reliability import images, run_train
from test_hostile import one_line


def mk(root: Path, n: int, shade: int, side: int = 8) -> Path:
    "n small noisy images of one shade in `root`"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shade)
    for i in range(n): Image.fromarray(np.clip(rng.normal(shade, 20, (side, side, 3)), 0, 255).astype(np.uint8)).save(root/f'{i}.png')
    return root


# -- defect 1: nested images counted but not used ------------------------------------------------------------------

def test_nested_images_are_trained_on_and_bs_is_checked_against_them(tmp_path, capsys):
    data = tmp_path/'data'
    mk(data/'train'/'cat', 8, 60); mk(data/'train'/'cat'/'extra', 6, 70); mk(data/'train'/'dog', 8, 190)
    mk(data/'valid'/'cat', 2, 60); mk(data/'valid'/'dog', 2, 190)
    status, err, m = run_train(data, tmp_path/'out', capsys, '--bs', 20)
    assert status == 0, err
    assert (m['n_train'], m['n_valid'], m['classes']) == (22, 4, ['cat', 'dog']) and math.isfinite(m['epochs'][0]['train_loss']), m
    status = main(['train', '--data', str(data), '--out', str(tmp_path/'out2'), '--epochs', '1', '--size', '8', '--bs', '23'])
    one_line(capsys.readouterr().err, 2, status, '--bs 23 is larger than the 22 training images')
    assert not (tmp_path/'out2').exists()


# -- defect 4: split folders in any case, test/ held out -------------------------------------------------------------

def test_split_folders_in_any_case_and_test_held_out_and_scored(tmp_path, capsys):
    data = tmp_path/'data'
    for split, n in (('Train', 8), ('VALID', 2), ('Test', 3)):
        mk(data/split/'a', n, 60); mk(data/split/'b', n, 190)
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert (m['n_train'], m['n_valid'], m['n_test']) == (16, 4, 6) and 0 <= m['test_accuracy'] <= 1, m
    assert 'held out 6 images in Test/' in err and 'test accuracy' in err.strip().splitlines()[-1], err
    assert (tmp_path/'out'/'export.pkl').exists()


def test_train_and_test_only_split_train_at_random_and_never_train_on_test(tmp_path):
    data = tmp_path/'data'
    mk(data/'train'/'a', 10, 60); mk(data/'train'/'b', 10, 190); mk(data/'test'/'a', 3, 60); mk(data/'test'/'b', 3, 190)
    f = check_folder(data)
    assert (f.presplit, f.n_train, f.n_valid, len(f.test)) == (False, 16, 4, 6)
    assert not {p for p in f.files if 'test' in p.parts}, f.files
    f = check_folder(images(tmp_path/'flat', n=5) and mk(tmp_path/'flat'/'Test'/'a', 2, 60).parent.parent)  # class folders + test/
    assert (f.classes, f.n_train + f.n_valid, len(f.test)) == (['a', 'b'], 10, 2)


def test_val_and_valid_together_are_refused_naming_both(tmp_path, capsys):
    data = tmp_path/'data'
    for split in ('train', 'val', 'valid'): images(data/split, n=2)
    status, err, _ = run_train(data, tmp_path/'out', capsys)
    one_line(err, 2, status, 'val/ and valid/ are both validation folders')
    assert not (tmp_path/'out').exists()


# -- defect 5: labels from the class folder, however deep ------------------------------------------------------------

def test_labels_come_from_the_first_folder_level(tmp_path, capsys):
    data = tmp_path/'data'
    mk(data/'cat'/'a', 6, 60); mk(data/'dog'/'a', 5, 190); mk(data/'dog'/'b', 5, 200)
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0 and m['classes'] == ['cat', 'dog'] and m['n_train'] + m['n_valid'] == 16, err
    pets = tmp_path/'pets'
    mk(pets/'cats'/'persian', 3, 60); mk(pets/'cats'/'siamese', 3, 80); mk(pets/'dogs', 3, 190)
    f = check_folder(pets)
    assert f.classes == ['cats', 'dogs'] and f.labels.count('cats') == 6, f.labels
    deep = tmp_path/'deep'
    mk(deep/'owls'/Path(*[f'l{i}' for i in range(60)]), 3, 60); mk(deep/'bats', 3, 190)
    f = check_folder(deep)
    assert (f.classes, f.n_train + f.n_valid) == (['bats', 'owls'], 6)


# -- defect 6: duplicates reported, the one kept independent of walk order -------------------------------------------

def test_hard_and_symbolic_links_to_a_counted_image_are_reported(tmp_path, capsys):
    data = images(tmp_path/'data')
    os.link(data/'b'/'1.png', data/'a'/'hard.png')
    (data/'a'/'0link.png').symlink_to(data/'b'/'2.png')  # sorts before b/2.png, but a real file wins over a link
    (data/'b'/'zlink.png').symlink_to(data/'a'/'3.png')
    status, err, m = run_train(data, tmp_path/'out', capsys)
    assert status == 0, err
    assert m['n_train'] + m['n_valid'] == 16 and sorted(m['duplicates'], key=lambda d: d['file']) == [
        dict(file='a/0link.png', duplicate_of='b/2.png'), dict(file='b/1.png', duplicate_of='a/hard.png'),  # two real names: the first by name
        dict(file='b/zlink.png', duplicate_of='a/3.png')], m['duplicates']
    assert 'did not use 3 image files that are another name (hard or symbolic link)' in err and 'b/1.png (same as a/hard.png)' in err


# -- defect 7: float images scaled, not clipped ----------------------------------------------------------------------

def test_float_images_train_as_their_8_bit_twins(tmp_path):
    rng = np.random.default_rng(0)
    for c, level in (('dark', 60), ('bright', 190)):
        for i in range(6):
            a = np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8)
            for kind in ('u8', 'f32'): (tmp_path/kind/c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(tmp_path/'u8'/c/f'{i}.png')
            Image.fromarray(a.astype(np.float32) / 255).save(tmp_path/'f32'/c/f'{i}.tif')
    assert Image.open(tmp_path/'f32'/'dark'/'0.tif').mode == 'F'
    assert (np.asarray(RGBImage.create(tmp_path/'f32'/'dark'/'0.tif')) == np.asarray(RGBImage.create(tmp_path/'u8'/'dark'/'0.png'))).all()
    batches = {}
    for kind in ('u8', 'f32'):
        dls = folder_dls(check_folder(tmp_path/kind, valid_pct=0.25), size=8, bs=3)
        batches[kind] = [(x.clone(), [dls.vocab[int(i)] for i in y]) for dl in (dls.train.new(shuffle=False), dls.valid) for x, y in dl]
    for (xu, yu), (xf, yf) in zip(batches['u8'], batches['f32']):
        assert yu == yf and (xu - xf).abs().max() < 1e-6


# -- defect 19: --valid-pct on a folder that has its validation images -----------------------------------------------

def test_valid_pct_for_a_split_folder_is_refused_and_used_for_a_flat_one(tmp_path, capsys):
    data = tmp_path/'data'
    images(data/'train', n=6); images(data/'valid', n=2)
    status, err, _ = run_train(data, tmp_path/'out', capsys, '--valid-pct', 0.3)
    one_line(err, 2, status, '--valid-pct 0.3:', 'is already split into train/ and valid/', 'leave --valid-pct out')
    assert not (tmp_path/'out').exists()
    status, err, m = run_train(images(tmp_path/'flat', n=10), tmp_path/'out', capsys, '--valid-pct', 0.25)
    assert status == 0 and (m['n_train'], m['n_valid']) == (15, 5), err


# -- defect 20: a damaged digits cache -------------------------------------------------------------------------------

def test_a_changed_or_damaged_digits_cache_is_one_line(digits, tmp_path, capsys):
    shutil.copytree(digits, tmp_path/'digits')
    (tmp_path/'digits'/'valid'/'3'/'notes.png').write_bytes(b'x')
    argv = ['train', '--cache', str(tmp_path), '--out', str(tmp_path/'out'), '--epochs', '1']
    status = main(argv)
    one_line(capsys.readouterr().err, 2, status, f'--cache {tmp_path}:', 'was changed since the digits were written there',
             'valid/3/notes.png', 'delete it to write it again')
    (tmp_path/'digits'/'valid'/'3'/'notes.png').unlink()
    (tmp_path/'digits'/'.complete').write_bytes(b'1797 images, valid_pct=0.2, seed=42\n\x00\x00')
    status = main(argv)
    line = one_line(capsys.readouterr().err, 2, status, '.complete is damaged', r"seed=42\n\x00\x00'")
    assert 'asked for' not in line and not (tmp_path/'out').exists()
