"The xResNet (ResNet-B/C/D with zero-gamma), taught in notebooks and plugged into fastai"
__version__ = "0.0.1"

# The public names load on first use (PEP 562), so that `import xresnet_fa.cli` and `xresnet-fa --help` start without
# torch and fastai. The first name used loads them all, registering the presets with fastai (learner) as before; where
# fastai is imported already (`from fastai.vision.all import *` first, as the docs do), they load at once.
_FROM = {
    'xresnet': ('XResNet', 'xresnet', 'xresnet18', 'xresnet34', 'xresnet50', 'xresnet101', 'xresnet152', 'count_macs', 'count_params'),
    'family': ('FAMILY', 'xresnet18_deep', 'xresnet34_deep', 'xresnet50_deep', 'xresnet18_deeper', 'xresnet34_deeper',
               'xresnet50_deeper', 'xse_resnet18', 'xse_resnext18', 'xresnext18', 'xse_resnet34', 'xse_resnext34',
               'xresnext34', 'xse_resnet50', 'xse_resnext50', 'xresnext50', 'xse_resnet101', 'xse_resnext101',
               'xresnext101', 'xse_resnet152', 'xsenet154', 'xse_resnext18_deep', 'xse_resnext34_deep',
               'xse_resnext50_deep', 'xse_resnext18_deeper', 'xse_resnext34_deeper', 'xse_resnext50_deeper',
               'xse_resnext26'),  # notebook 02b
    'learner': ('register', 'variant', 'xresnet_split'),  # importing learner registers the presets with fastai
    'backbone': ('features_only', 'FeatureList', 'FeatureInfo'),  # notebook 14: timm's backbone methods, patched onto XResNet
}
__all__ = [name for names in _FROM.values() for name in names]

def _load() -> None:
    "Import the public names into the package, as an eager `from .xresnet import ...` would"
    import importlib, warnings
    with warnings.catch_warnings():  # fastai's layers.py calls torch.jit.script at import; torch's FutureWarning about it is fastai's to fix, not our users'
        warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
        modules = {m: importlib.import_module(f'.{m}', __name__) for m in _FROM}
    globals().update({name: getattr(modules[m], name) for m, names in _FROM.items() for name in names})

def __getattr__(name: str):
    if name not in __all__: raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load()
    return globals()[name]

def __dir__(): return sorted({*globals(), *__all__})

import sys as _sys, types as _types

class _Package(_types.ModuleType):
    "The package module: importing the submodule `xresnet_fa.xresnet` leaves the name `xresnet` to the function, as eager imports did"
    def __setattr__(self, name, value):
        if name in __all__ and isinstance(value, _types.ModuleType): return  # the submodule stays in sys.modules
        super().__setattr__(name, value)

_sys.modules[__name__].__class__ = _Package
if 'fastai' in _sys.modules: _load()  # fastai's cost is paid: register now, as an eager import did

# timm (an optional extra) learns our presets (notebook 15) as soon as both are imported, in either order, and timm is never
# imported for a user who does not import it: registered now if timm is loaded, else by a finder that waits for timm's import.
def _register_timm() -> None:
    import importlib, warnings
    try: importlib.import_module('.timm_hub', __name__)
    except Exception as e: warnings.warn(f"xresnet_fa: could not register the presets with timm ({type(e).__name__}: {e})")

class _AfterTimm:
    "A sys.meta_path finder that lets timm import as usual, then registers the presets with it"
    def find_spec(self, name, path=None, target=None):
        if name != 'timm': return None
        import importlib.util
        _sys.meta_path.remove(self)  # once: the real finders locate timm
        spec = importlib.util.find_spec('timm')
        if spec is not None and spec.loader is not None and hasattr(spec.loader, 'exec_module'):
            run = spec.loader.exec_module
            def exec_module(module):
                run(module)
                _register_timm()
            spec.loader.exec_module = exec_module
        return spec

if 'timm' in _sys.modules: _register_timm()
elif not any(isinstance(f, _AfterTimm) for f in _sys.meta_path): _sys.meta_path.insert(0, _AfterTimm())
