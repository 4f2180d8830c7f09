"The xResNet (ResNet-B/C/D with zero-gamma), taught in notebooks and plugged into fastai"
__version__ = "0.0.1"

import warnings as _warnings
with _warnings.catch_warnings():  # fastai's layers.py calls torch.jit.script at import; torch's FutureWarning about it is fastai's to fix, not our users'
    _warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
    from .xresnet import XResNet, xresnet, xresnet18, xresnet34, xresnet50, xresnet101, xresnet152, count_macs, count_params
    from .family import (FAMILY, xresnet18_deep, xresnet34_deep, xresnet50_deep, xresnet18_deeper, xresnet34_deeper,
                         xresnet50_deeper, xse_resnet18, xse_resnext18, xresnext18, xse_resnet34, xse_resnext34,
                         xresnext34, xse_resnet50, xse_resnext50, xresnext50, xse_resnet101, xse_resnext101,
                         xresnext101, xse_resnet152, xsenet154, xse_resnext18_deep, xse_resnext34_deep,
                         xse_resnext50_deep, xse_resnext18_deeper, xse_resnext34_deeper, xse_resnext50_deeper,
                         xse_resnext26)  # notebook 02b
    from .learner import register, variant, xresnet_split  # importing learner registers the presets with fastai
