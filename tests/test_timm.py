"""timm and the Hub (issue 20, points 1, 3, 4): tags and their configs, timm's registry, features, preprocessing, fastai by name,
the order of imports, the Hub's layout. Offline: every weights file is one the test makes."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, timm, torch
from torch import nn
from safetensors.torch import save_file
from timm.data import resolve_data_config, create_transform
from timm.models import get_pretrained_cfg
from xresnet_fa import XResNet, xresnet18, FAMILY
from xresnet_fa.backbone import features_only
from xresnet_fa.weights import pretrained_tags, weights_name, pretrained_cfg, CheckpointError
from xresnet_fa.timm_hub import save_pretrained, from_pretrained, checked_conversion
from conftest import randomize

ROOT = Path(__file__).parent.parent
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _run(code: str, **env) -> subprocess.CompletedProcess:
    "`code` in a fresh Python, the worktree's package first"
    env = {**os.environ, 'PYTHONPATH': str(ROOT), **env}
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope='module')
def ref18():
    "timm's resnet18d with random weights (BatchNorm statistics too), eval"
    return randomize(timm.create_model('resnet18d'), seed=18).eval()


@pytest.fixture(scope='module')
def files(ref18, tmp_path_factory):
    "ref18's weights in timm's names (.pth) and in ours (.safetensors)"
    d = tmp_path_factory.mktemp('w')
    torch.save(ref18.state_dict(), d/'resnet18d.pth')
    ours = xresnet18(pretrained=d/'resnet18d.pth')
    save_file(ours.state_dict(), d/'ours18.safetensors')
    return d


def _scramble(model: nn.Module, seed: int) -> nn.Module:
    "Every tensor of `model` drawn at random (running variances positive), so a tensor lost on the way shows"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if k.endswith('running_var'): t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.is_floating_point(): t.copy_(torch.randn(t.shape, generator=g)*0.1)
    return model.eval()


def _hub_cache(root: Path, repo: str, files: dict) -> Path:
    "A Hugging Face cache under `root` holding `files` (name -> writer(path)) for `repo`, as the hub client leaves it"
    repo_dir = root/f"models--{repo.replace('/', '--')}"
    snap = repo_dir/'snapshots'/'0'
    snap.mkdir(parents=True)
    (repo_dir/'refs').mkdir(); (repo_dir/'refs'/'main').write_text('0')
    for name, write in files.items(): write(snap/name)
    return root


# --- point 3: tags and their configs -------------------------------------------------------------------------------------

def test_tags_come_from_timms_registry_default_first():
    tags = pretrained_tags(50)
    assert tags[0] == 'ra2_in1k'
    assert set(tags) == {n.split('.', 1)[1] for n in timm.list_pretrained('resnet50d.*')}
    assert weights_name(50) == 'resnet50d.ra2_in1k'
    assert weights_name(50, 'a1_in1k') == weights_name(50, 'resnet50d.a1_in1k') == 'resnet50d.a1_in1k'
    assert pretrained_tags('xresnext50') == ['bt_in1k']


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"not a tag of timm's resnet50d; its tags: ra2_in1k, a1_in1k.*\(pretrained=True: ra2_in1k\)"):
        from xresnet_fa import xresnet50
        xresnet50(pretrained='a9_in1k')
    with pytest.raises(FileNotFoundError, match='no such file'): xresnet18(pretrained='missing.pth')  # a file name stays a file


def test_pretrained_cfg_is_the_tags_own():
    for tag in ('ra2_in1k', 'a1_in1k'):
        cfg, theirs = pretrained_cfg(50, tag), get_pretrained_cfg(f'resnet50d.{tag}')
        for k in ('input_size', 'test_input_size', 'crop_pct', 'interpolation', 'mean', 'std', 'license', 'hf_hub_id'):
            assert cfg[k] == getattr(theirs, k), k
        assert (cfg['architecture'], cfg['tag'], cfg['first_conv'], cfg['classifier']) == ('xresnet50', tag, 'stem_1.conv', 'fc')
    assert pretrained_cfg(50, 'ra2_in1k')['crop_pct'] != pretrained_cfg(50, 'a1_in1k')['crop_pct']  # tags differ: the config matters


def test_local_files_load_and_say_so(files, ref18):
    for f in ('resnet18d.pth', 'ours18.safetensors'):
        m = xresnet18(pretrained=files/f).eval()
        with torch.no_grad(): torch.testing.assert_close(m(X), ref18(X), rtol=0, atol=1e-5)
        assert m.pretrained_cfg == m.default_cfg == {'architecture': 'xresnet18', 'file': str(files/f), 'source': 'file'}


def test_a_tag_loads_from_the_hub_cache_with_its_config(files, tmp_path):
    "pretrained='<tag>' in a fresh process, offline, on a hub cache holding other weights under the tag's name"
    tag = 'ra4_e3600_r224_in1k'
    sd = torch.load(files/'resnet18d.pth')
    _hub_cache(tmp_path/'hub', f'timm/resnet18d.{tag}', {'model.safetensors': lambda p: save_file(sd, p)})
    code = (f"import torch; from xresnet_fa import xresnet18; m = xresnet18(pretrained='resnet18d.{tag}'); "
            f"torch.save(dict(sd=m.state_dict(), cfg=m.pretrained_cfg), {str(tmp_path/'out.pth')!r})")
    r = _run(code, HF_HUB_CACHE=str(tmp_path/'hub'), HF_HUB_OFFLINE='1')
    assert r.returncode == 0, r.stderr[-2000:]
    out = torch.load(tmp_path/'out.pth')
    assert out['cfg'] == pretrained_cfg(18, tag)
    want = xresnet18(pretrained=files/'resnet18d.pth').state_dict()
    assert all(torch.equal(out['sd'][k], v) for k, v in want.items())


def test_without_timm_true_and_tags_say_what_to_install(files):
    code = ("import sys; sys.modules['timm'] = None\n"  # as if timm were not installed
            "from xresnet_fa import xresnet18\n"
            "for p in (True, 'a1_in1k'):\n"
            "    try: xresnet18(pretrained=p)\n"
            "    except ImportError as e: print(e)\n"
            f"m = xresnet18(pretrained={str(files/'resnet18d.pth')!r}); print('file ok', m.pretrained_cfg['source'])")
    r = _run(code)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert "pretrained=True loads ImageNet weights through timm, which is not installed" in lines[0]
    assert "pretrained='a1_in1k' is neither a file nor loadable without timm" in lines[1] and "pip install 'xresnet_fa[timm]'" in lines[1]
    assert lines[2] == 'file ok file'


# --- point 1: timm knows our models ----------------------------------------------------------------------------------------

def test_every_preset_is_a_timm_name():
    assert set(timm.list_models(['xres*', 'xse*'])) == set(FAMILY)
    assert timm.list_models('xresnet*') and all(n.startswith('xresnet') for n in timm.list_models('xresnet*'))
    assert {'xresnet50.ra2_in1k', 'xresnet50.a1_in1k', 'xresnext50.bt_in1k', 'xse_resnext26.bt_in1k'} <= set(timm.list_pretrained('x*'))


@pytest.mark.parametrize('name', list(FAMILY))
def test_timm_builds_every_preset_and_its_features(name):
    "On the meta device: the preset timm builds is ours, with timm's keywords translated; features_only wraps its levels"
    with torch.device('meta'):
        m = timm.create_model(name, num_classes=7, in_chans=1)
        f = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))
    assert isinstance(m, XResNet) and m.num_classes == 7 and m.stem_1.conv.in_channels == 1
    assert m.pretrained_cfg['architecture'] == name and m.default_cfg is m.pretrained_cfg
    assert f.feature_info.channels() == m.feature_info.channels()[1:5]
    assert f.feature_info.reduction() == [4, 8, 16, 32]


def test_timm_pretrained_goes_through_the_checked_conversion(files, ref18):
    overlay = lambda f: dict(pretrained_cfg_overlay=dict(file=str(files/f)))
    for f in ('resnet18d.pth', 'ours18.safetensors'):  # timm's names and ours
        m = timm.create_model('xresnet18', pretrained=True, **overlay(f)).eval()
        with torch.no_grad(): torch.testing.assert_close(m(X), ref18(X), rtol=0, atol=1e-5)
    tuned = timm.create_model('xresnet18', pretrained=True, num_classes=5, in_chans=1, **overlay('resnet18d.pth'))
    assert torch.equal(tuned.stem_1.conv.weight.detach(), ref18.conv1[0].weight.detach().sum(1, keepdim=True))
    assert torch.equal(tuned.stage_4[1].residual[1].conv.weight.detach(), ref18.layer4[1].conv2.weight.detach())
    torch.save(timm.create_model('resnet34d').state_dict(), files/'resnet34d.pth')
    with pytest.raises(CheckpointError, match='timm checkpoint has a tensor the model lacks: layer1.2.conv1.weight'):
        timm.create_model('xresnet18', pretrained=True, **overlay('resnet34d.pth'))
    with pytest.raises(CheckpointError): checked_conversion({'stem_1.conv.weight': torch.zeros(1)}, xresnet18())


def test_timm_features_equal_the_backbones(files):
    full = timm.create_model('xresnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(files/'resnet18d.pth'))).eval()
    f = timm.create_model('xresnet18', pretrained=True, features_only=True, out_indices=(0, 2, 4),
                          pretrained_cfg_overlay=dict(file=str(files/'resnet18d.pth'))).eval()
    ours = features_only(full, (0, 2, 4)).eval()
    with torch.no_grad():
        for a, b in zip(f(X), ours(X), strict=True): assert torch.equal(a, b)
        assert torch.equal(f(X)[-1], full.forward_features(X))


def test_data_config_and_transform_follow_the_tag():
    with torch.device('meta'):
        ra2, a1 = timm.create_model('xresnet50'), timm.create_model('xresnet50.a1_in1k')
    c_ra2, c_a1 = resolve_data_config({}, model=ra2), resolve_data_config({}, model=a1)
    assert c_ra2['crop_pct'] == get_pretrained_cfg('resnet50d.ra2_in1k').crop_pct
    assert c_a1['crop_pct'] == get_pretrained_cfg('resnet50d.a1_in1k').crop_pct
    assert c_ra2['interpolation'] == 'bicubic' and c_ra2['mean'] == get_pretrained_cfg('resnet50d.ra2_in1k').mean
    t = create_transform(**c_a1)
    assert [type(s).__name__ for s in t.transforms][:2] == ['Resize', 'CenterCrop']


def test_registration_whatever_the_import_order():
    after = _run("import sys, xresnet_fa.xresnet; assert 'timm' not in sys.modules, 'timm imported for nothing'\n"
                 "import timm; print(timm.is_model('xresnet50'), len(timm.list_models(module='timm_hub')))")
    before = _run("import timm, xresnet_fa; print(timm.is_model('xresnet50'), len(timm.list_models(module='timm_hub')))")
    for r in (after, before): assert r.returncode == 0 and r.stdout.split() == ['True', str(len(FAMILY))], r.stderr[-2000:]


def test_vision_learner_by_name(digits, files):
    from fastai.vision.all import ImageDataLoaders, Resize, Normalize, vision_learner, accuracy, ShortEpochCallback
    dls = ImageDataLoaders.from_folder(digits, train='train', valid='valid', item_tfms=Resize(32), bs=16, num_workers=0)
    learn = vision_learner(dls, 'xresnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(files/'resnet18d.pth')), metrics=accuracy)
    body = learn.model[0].model
    assert isinstance(body, XResNet) and body.num_classes == 0
    assert torch.equal(body.stage_4[1].residual[1].conv.weight.detach().cpu(), torch.load(files/'resnet18d.pth')['layer4.1.conv2.weight'])
    assert len(learn.opt.param_groups) == 3  # stem, stages, head: xresnet_split, as for the function
    assert not any(p.requires_grad for p in body.stage_4.parameters() if p.ndim > 1)  # frozen: the body's weights
    norm = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    assert norm and torch.allclose(norm[0].mean.flatten().cpu(), torch.tensor(body.pretrained_cfg['mean']))
    before = [p.detach().clone() for p in learn.model[1].parameters()]
    learn.fit(1, 1e-3, cbs=ShortEpochCallback(pct=0.03))  # real training steps on the digits: three batches
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, learn.model[1].parameters()))


# --- point 4: the Hub ----------------------------------------------------------------------------------------------------------

def test_hub_layout_round_trip_lossless(tmp_path):
    m = _scramble(xresnet18(n_out=10, c_in=1), seed=4)
    folder = save_pretrained(m, tmp_path/'repo', arch='xresnet18')
    assert {p.name for p in folder.iterdir()} == {'config.json', 'model.safetensors'}
    config = json.loads((folder/'config.json').read_text())
    assert config['architecture'] == 'xresnet18' and config['model_args'] == {'num_classes': 10, 'in_chans': 1}
    x = torch.randn(2, 1, 32, 32)
    for back in (from_pretrained(folder), timm.create_model(f'local-dir:{folder}', pretrained=True)):
        back.eval()
        assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())
        with torch.no_grad(): assert torch.equal(back(x), m(x))
    with pytest.raises(ValueError, match='arch must name the preset'): save_pretrained(xresnet18(), tmp_path/'x')


def test_hf_hub_route_offline(tmp_path):
    "from_pretrained('user/name') and timm's hf-hub: read a repo from the hub cache, in a fresh process with the hub offline"
    m = _scramble(xresnet18(n_out=3), seed=5)
    folder = save_pretrained(m, tmp_path/'repo', arch='xresnet18')
    _hub_cache(tmp_path/'hub', 'me/digits18', {f.name: lambda p, f=f: p.write_bytes(f.read_bytes()) for f in folder.iterdir()})
    torch.save(m.state_dict(), tmp_path/'want.pth')
    code = (f"import torch, timm, xresnet_fa; from xresnet_fa.timm_hub import from_pretrained\n"
            f"want = torch.load({str(tmp_path/'want.pth')!r})\n"
            f"for m in (from_pretrained('me/digits18'), timm.create_model('hf-hub:me/digits18', pretrained=True)):\n"
            f"    print(all(torch.equal(m.state_dict()[k], v) for k, v in want.items()), m.num_classes)")
    r = _run(code, HF_HUB_CACHE=str(tmp_path/'hub'), HF_HUB_OFFLINE='1')
    assert r.returncode == 0 and r.stdout.split() == ['True', '3', 'True', '3'], r.stderr[-2000:]
