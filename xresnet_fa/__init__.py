"The xResNet (ResNet-B/C/D with zero-gamma), taught in notebooks and plugged into fastai"
__version__ = "0.0.1"

import warnings as _warnings
with _warnings.catch_warnings():  # fastai's layers.py calls torch.jit.script at import; torch's FutureWarning about it is fastai's to fix, not our users'
    _warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
    from .xresnet import XResNet, xresnet, xresnet18, xresnet34, xresnet50, xresnet101, xresnet152, count_macs, count_params
    from .learner import register, variant, xresnet_split  # importing learner registers the presets with fastai
