"""Property-based tests (hypothesis) over XResNet's constructor arguments and input sizes.

Property: for every generated configuration and input, EITHER the model builds and a forward + backward pass on a
random batch (N >= 2, H and W in 1..70, square or not) gives finite logits of shape (N, n_out) and a finite, non-None
gradient on every parameter, OR construction raises ValueError/TypeError whose message names an offending argument.
Arguments are drawn valid or invalid from a small model of the documented contract; a config that model calls
valid must build, one it calls invalid must be refused. Runs are derandomized and database-free, so CI is reproducible.

The tests at the end hold reproducers of package bugs these properties found (unhashable depth, integers past int64,
activation classes that change the shape, empty images): each was fixed in the package and is kept as a regression test.
"""
import functools, re, warnings
from collections import Counter
import numpy as np
import pytest, torch
from torch import nn
import torch.nn.functional as F
from hypothesis import HealthCheck, event, example, given, note, settings, strategies as st
from functools import partial
from xresnet_fa import XResNet, xresnet
from xresnet_fa.resblock import ResBlock
from xresnet_fa.xresnet import DEPTHS, xresnet18, xresnet34, xresnet50

SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OMIT = object()  # "leave the argument out" (its default applies)
SWITCHES = ('stride_3x3', 'deep_stem', 'avg_down', 'zero_bn')
BLOCK_SWITCHES = ('stride_3x3', 'avg_down', 'zero_bn')  # ResBlock's: XResNet takes them as block=partial(ResBlock, ...)

# ---------------------------------------------------------------------------------------------------- helpers

def names_arg(msg: str, name: str) -> bool:
    "Does `msg` name the argument `name` as a word (so 'p' is not found in 'expects', 'widths' not in 'stem_widths')?"
    return re.search(rf'(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])', msg) is not None


def check_forward_backward(model: nn.Module, n: int, c_in: int, h: int, w: int, n_out: int, seed: int = 0):
    "Forward + backward a random (n, c_in, h, w) batch in training mode; finite logits and a finite grad on every parameter"
    torch.manual_seed(seed)
    model.train()
    out = model(torch.randn(n, c_in, h, w))
    assert out.shape == (n, n_out), f"output shape {tuple(out.shape)}, expected {(n, n_out)}"
    assert torch.isfinite(out).all(), f"non-finite output {out}"
    model.zero_grad(set_to_none=True)
    out.square().mean().backward()  # every parameter reaches the loss (zero-gamma may make some grads exactly 0)
    for name, prm in model.named_parameters():
        assert prm.grad is not None, f"no gradient on {name}"
        assert torch.isfinite(prm.grad).all(), f"non-finite gradient on {name}"


def build(ctor, kwargs):
    "Call ctor(**kwargs); return (model, None) or (None, exception) for ValueError/TypeError; anything else propagates"
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # e.g. nn.Softmax's implicit-dim warning
        try: return ctor(**kwargs), None
        except (ValueError, TypeError) as e: return None, e

# ---------------------------------------------------------------------------------------------------- strategies

def ints(lo, hi): return st.one_of(st.integers(lo, hi), st.integers(lo, hi).map(np.int64))  # numpy ints are whole numbers too

BAD_WHOLE = st.sampled_from([0, -1, -7, 2.0, 0.5, True, False, '2', None, [2], float('nan'), torch.tensor(2)])
BAD_SEQ = st.one_of(
    st.sampled_from([[], (), None, 2, 2.0, '12', b'12', True]),
    st.just({1, 2}), st.just({1: 1}),  # a set, a dict: not sequences
    st.builds(lambda: (i for i in (1, 2))),  # a generator: not a sequence
)
VALID_ACTS = [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
              nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.PReLU, nn.Identity,
              nn.LogSigmoid, nn.Softmax2d, nn.RReLU, nn.Dropout,
              functools.partial(nn.LeakyReLU, 0.2), functools.partial(nn.ReLU, inplace=True),
              functools.partial(nn.SiLU, inplace=True), type('MyReLU', (nn.ReLU,), {})]
BAD_ACTS = [nn.ReLU(), nn.SiLU(), None, 'relu', 3, torch.relu, F.relu, lambda x: x, int, str, object,
            nn.Linear, nn.Conv2d, nn.Threshold, nn.functional.gelu]


def seq_of(lo, hi, min_len, max_len, length=None):
    "A valid sequence of whole numbers, as a list, tuple or range"
    size = dict(min_size=length, max_size=length) if length is not None else dict(min_size=min_len, max_size=max_len)
    return st.one_of(st.lists(ints(lo, hi), **size), st.lists(ints(lo, hi), **size).map(tuple))


def bad_seq(good: st.SearchStrategy):
    "An invalid sequence: not a non-empty sequence, or a valid one with one bad element"
    @st.composite
    def one_bad_element(draw):
        s = list(draw(good))
        s[draw(st.integers(0, len(s) - 1))] = draw(BAD_WHOLE)
        return s
    return st.one_of(BAD_SEQ, one_bad_element())


@st.composite
def configs(draw):
    "(kwargs for XResNet, set of argument names the contract says are invalid)"
    args = ['expansion', 'layers', 'widths', 'n_out', 'c_in', 'p', 'ks', 'act_cls', *SWITCHES]
    bad = draw(st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(args), min_size=1, max_size=2)))
    kw, invalid = {}, set()

    def pick(name, good, wrong, optional=True):
        if name in bad:
            kw[name] = draw(st.one_of(wrong, st.just(OMIT)) if not optional else wrong); invalid.add(name)
        else:
            kw[name] = draw(st.one_of(good, st.just(OMIT)) if optional else good)
    pick('expansion', st.sampled_from([1, 1, 2, 4]), BAD_WHOLE, optional=False)
    pick('layers', st.one_of(seq_of(1, 2, 1, 4), st.sampled_from([range(1, 3), range(1, 2)])),
         bad_seq(seq_of(1, 2, 1, 4)), optional=False)
    layers = kw['layers']
    n_stages = len(layers) if 'layers' not in invalid else None
    # widths: its own elements, and one width per stage (judged only when layers itself is a valid sequence)
    if 'widths' in bad:
        wrong = [bad_seq(seq_of(1, 12, 1, 4))]
        if n_stages is not None:
            wrong.append(st.integers(1, 4).map(lambda k: k + (k >= n_stages)).flatmap(lambda k: seq_of(1, 12, k, k, k)))
            if n_stages != 4: wrong.append(st.just(OMIT))  # the default widths have 4 stages
        kw['widths'] = draw(st.one_of(*wrong)); invalid.add('widths')
    else:
        good = [seq_of(2, 12, 1, 4, n_stages if n_stages is not None else None)]  # widths[0] >= 2: the stem halves it
        if n_stages == 4: good.append(st.just(OMIT))
        kw['widths'] = draw(st.one_of(*good))
    pick('n_out', ints(1, 10), BAD_WHOLE)
    pick('c_in', ints(1, 4), BAD_WHOLE)
    pick('p', st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0, 0.0, 0.5, 0.999, np.float64(0.25)])),
         st.one_of(st.sampled_from([1, 1.0, 2, -1, -0.1, 1.5, float('nan'), float('inf'), -float('inf'), '0.5', None,
                                    True, False, [0.5]]),
                   st.floats(1, 1e6), st.floats(-1e6, -1e-6)))
    pick('ks', st.sampled_from([1, 3, 3, 5, 7]), st.one_of(BAD_WHOLE, st.sampled_from([2, 4, 6, 8])))
    pick('act_cls', st.sampled_from(VALID_ACTS), st.sampled_from(BAD_ACTS))
    for s in SWITCHES: pick(s, st.booleans(), st.sampled_from([0, 1, 1.0, 'yes', 'True', None, []]))
    kw = {k: v for k, v in kw.items() if v is not OMIT}
    if switches := {k: kw.pop(k) for k in BLOCK_SWITCHES if k in kw}: kw['block'] = partial(ResBlock, **switches)
    return kw, invalid


INPUT = dict(n=st.integers(2, 3), h=st.integers(1, 70), w=st.integers(1, 70), seed=st.integers(0, 2**16))

# ---------------------------------------------------------------------------------------------------- properties

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Tiny tensors gain nothing from threads, and on a shared 2-core machine oversubscribed threads are 10-50x slower"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def branch_counts():
    "How often the constructor property built a model and how often it was refused; both must have happened"
    counts = Counter()
    yield counts
    print(f"\nconstructor property: {dict(counts)}")
    assert counts['built'] >= 20 and counts['refused'] >= 20, f"one branch barely exercised: {dict(counts)}"


@settings(max_examples=1000, **SETTINGS)
@given(cfg=configs(), **INPUT)
@example(cfg=(dict(expansion=1, layers=[1], widths=[2], n_out=1, c_in=1), set()), n=2, h=1, w=1, seed=0)
@example(cfg=(dict(expansion=4, layers=[1, 1, 1, 1], widths=[2, 2, 2, 2], ks=7, deep_stem=False,
                   block=partial(ResBlock, avg_down=False, stride_3x3=False, zero_bn=False)), set()), n=2, h=1, w=70, seed=0)
@example(cfg=(dict(expansion=1, layers=[1], widths=[1]), {'widths'}), n=2, h=1, w=1, seed=0)
@example(cfg=(dict(expansion=1, layers=[2, 2], widths=[4, 8], p=0.999, act_cls=nn.PReLU), set()),
         n=2, h=69, w=3, seed=0)
def test_constructor_builds_and_trains_or_refuses_naming_the_argument(branch_counts, cfg, n, h, w, seed):
    kwargs, invalid = cfg
    note(f"XResNet(**{kwargs!r}); invalid by contract: {sorted(invalid)}; input ({n}, c_in, {h}, {w})")
    for a in invalid: event(f"invalid {a}")
    model, err = build(XResNet, kwargs)
    if err is not None:
        branch_counts['refused'] += 1; event(f"refused: {type(err).__name__}")
        assert invalid, f"a valid config was refused: {type(err).__name__}: {err}"
        assert any(names_arg(str(err), a) for a in invalid), f"{type(err).__name__} names none of {sorted(invalid)}: {err}"
        return
    branch_counts['built'] += 1; event('built')
    assert not invalid, f"built although {sorted(invalid)} break the documented contract"
    check_forward_backward(model, n, kwargs.get('c_in', 3), h, w, kwargs.get('n_out', 1000), seed)


@settings(max_examples=50, **SETTINGS)
@given(preset=st.sampled_from([xresnet18, xresnet34, xresnet50]), n_out=st.integers(1, 5), c_in=st.integers(1, 4),
       tweaks=st.fixed_dictionaries({s: st.booleans() for s in SWITCHES}), p=st.sampled_from([0.0, 0.5]),
       act_cls=st.sampled_from([nn.ReLU, nn.SiLU, nn.Mish]), n=st.just(2), h=st.integers(1, 70), w=st.integers(1, 70))
@example(preset=xresnet50, n_out=1, c_in=1, tweaks=dict.fromkeys(SWITCHES, True), p=0.0, act_cls=nn.ReLU, n=2, h=1, w=1)
@example(preset=xresnet34, n_out=2, c_in=3, tweaks=dict.fromkeys(SWITCHES, False), p=0.5, act_cls=nn.ReLU, n=2, h=33, w=7)
def test_presets_train_on_any_input_size(preset, n_out, c_in, tweaks, p, act_cls, n, h, w):
    event(preset.__name__)
    model = preset(n_out=n_out, c_in=c_in, p=p, act_cls=act_cls, **tweaks)
    check_forward_backward(model, n, c_in, h, w, n_out)


@settings(max_examples=60, **SETTINGS)
@given(depth=st.one_of(st.sampled_from(sorted(DEPTHS)),
                       st.sampled_from([0, 1, 17, 19, 20, 51, 200, -18, True, None, '18', 'resnet18', 18.5, (18,)]),
                       st.integers(-1000, 1000)),
       h=st.integers(1, 40), w=st.integers(1, 40))
@example(depth=18, h=1, w=1)
@example(depth=34, h=40, w=3)
@example(depth=50, h=2, w=17)
@example(depth=101, h=7, w=1)
@example(depth=152, h=33, w=32)
def test_xresnet_depth_builds_or_refuses_naming_depth(depth, h, w):
    "A known depth builds (on the meta device: no memory) and its layout, at small widths to keep 101/152 cheap, trains; an unknown one is refused naming `depth`"
    with torch.device('meta'): model, err = build(lambda **kw: xresnet(depth, **kw), dict(n_out=2))
    if err is not None:
        event('refused')
        assert depth not in DEPTHS, f"depth={depth!r} refused: {err}"
        assert names_arg(str(err), 'depth'), str(err)
        return
    event(f'built {depth!r}')
    assert [n for n, _ in model.named_children()][-4:] == ['pool', 'flatten', 'dropout', 'fc']
    check_forward_backward(XResNet(*DEPTHS[depth], n_out=2, widths=(2, 2, 2, 2)), 2, 3, h, w, 2)


@functools.lru_cache(maxsize=None)
def small_model(c_in: int, deep_stem: bool) -> XResNet:
    torch.manual_seed(0)
    return XResNet(1, (1, 1), c_in=c_in, n_out=3, widths=(4, 8), deep_stem=deep_stem)


@st.composite
def wrong_inputs(draw):
    "(c_in of the model, a shape that is not (N, c_in, H, W))"
    c_in = draw(st.integers(1, 4))
    if draw(st.booleans()):  # wrong number of dimensions
        ndim = draw(st.sampled_from([0, 1, 2, 3, 5, 6]))
        shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    else:  # four dimensions, wrong channel count
        shape = (draw(st.integers(1, 3)), draw(st.integers(0, 7).map(lambda c: c + (c >= c_in))),
                 draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    return c_in, shape


@settings(max_examples=200, **SETTINGS)
@given(case=wrong_inputs(), deep_stem=st.booleans(), train=st.booleans())
@example(case=(3, (3, 32, 32)), deep_stem=True, train=True)  # a single image without the batch dimension
@example(case=(1, (2, 32, 32)), deep_stem=False, train=False)  # (N, H, W) for a 1-channel model: still 3-d
def test_wrong_input_rank_or_channels_is_refused_by_torch(case, deep_stem, train):
    c_in, shape = case
    event('ndim' if len(shape) != 4 else 'channels')
    model = small_model(c_in, deep_stem).train(train)
    with pytest.raises((RuntimeError, ValueError)) as e:  # torch's own errors: forward has no Python-side checks
        model(torch.randn(shape))
    msg = str(e.value)
    if len(shape) == 4: assert f"to have {c_in} channels, but got {shape[1]} channels instead" in msg, msg
    else:  # conv2d reads a 3-d input as one unbatched image (C, H, W): then its channel check or BatchNorm's 4-d check speaks
        assert re.search(r'expected 4D input|Expected 3D \(unbatched\) or 4D \(batched\) input|to have \d+ channels, but got', msg), msg

# Found at commit dfc7652 (pretrained=1 gave TypeError('expected str, bytes or os.PathLike object, not int'), naming
# nothing); the working tree's weights.py now refuses such values naming pretrained, so this is a plain property.
@settings(max_examples=6, **SETTINGS)
@given(pretrained=st.sampled_from([1, 2, 1.5, [1], np.True_, object()]))
def test_pretrained_of_wrong_type_is_refused_naming_pretrained(pretrained):
    model, err = build(lambda: xresnet(18, pretrained=pretrained), {})
    assert err is not None and names_arg(str(err), 'pretrained'), f"{type(err).__name__}: {err}"

# ---------------------------------------------------------------------------------------------------- package bugs found
# Each test below holds a reproducer of a bug these properties found, fixed since: regression tests.
BUG_SETTINGS = dict(SETTINGS, report_multiple_bugs=False)  # one AssertionError, not an ExceptionGroup

@settings(max_examples=5, **BUG_SETTINGS)
@given(depth=st.sampled_from([[18], {}, {18}, [50, 18]]))
def test_fixed_unhashable_depth_is_refused_naming_depth(depth):
    model, err = build(lambda: xresnet(depth), {})
    assert err is not None and names_arg(str(err), 'depth'), f"{type(err).__name__}: {err}"


@settings(max_examples=10, **BUG_SETTINGS)
@given(name=st.sampled_from(['n_out', 'c_in', 'ks', 'widths', 'expansion']),
       big=st.sampled_from([2**64 + 1, 10**30 + 1]))  # past int64: torch refuses before allocating anything
def test_fixed_huge_whole_numbers_are_refused_naming_the_argument(name, big):
    kwargs = dict(expansion=1, layers=(1,), widths=(4,), n_out=2)
    kwargs[name] = (big,) if name == 'widths' else big
    model, err = build(XResNet, kwargs)
    assert err is not None and names_arg(str(err), name), f"{type(err).__name__}: {err}"


@settings(max_examples=10, **BUG_SETTINGS)
@given(act_cls=st.sampled_from([nn.Flatten, nn.GLU, nn.Module, nn.Upsample, nn.MSELoss, nn.Dropout1d, nn.ModuleList,
                                nn.LazyBatchNorm1d]))
def test_fixed_non_activation_module_classes_are_refused_at_construction(act_cls):
    model, err = build(XResNet, dict(expansion=1, layers=(1,), widths=(4,), n_out=2, act_cls=act_cls))
    if err is not None:
        assert names_arg(str(err), 'act_cls'), str(err)
        return
    try: check_forward_backward(model, 2, 3, 8, 8, 2)
    except Exception as e: raise AssertionError(f"built with act_cls={act_cls.__name__}, then {type(e).__name__}: {e}")


@settings(max_examples=6, **BUG_SETTINGS)
@given(hw=st.sampled_from([(0, 8), (8, 0), (0, 0), (0, 1)]), deep_stem=st.booleans())
def test_fixed_empty_image_is_refused(hw, deep_stem):
    "an empty image never gives logits: torch's pooling or conv refuses it (forward has no Python-side checks)"
    model = small_model(3, deep_stem).train()
    with pytest.raises(RuntimeError): model(torch.randn(2, 3, *hw))
