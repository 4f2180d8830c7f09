"The xResNet (ResNet-B/C/D with zero-gamma), taught in notebooks and plugged into fastai"
__version__ = "0.0.1"

from .xresnet import XResNet, xresnet, xresnet18, xresnet34, xresnet50, xresnet101, xresnet152, count_macs, count_params
from .learner import register, variant, xresnet_split  # importing learner registers the presets with fastai
