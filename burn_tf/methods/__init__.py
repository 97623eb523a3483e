"""Pretraining methods: one file and one ``keras.Model`` subclass each, on
:class:`~burn_tf.methods.base.PretrainMethod` (or its middle layers
:class:`~burn_tf.methods.distillation.DistillationMethod` and
:class:`~burn_tf.methods.momentum.MomentumMethod`). Importing this package registers them all.

>>> from burn_tf.methods import method_class
>>> method_class("burn")            # → BURN, whose .Config is its config dataclass
"""

from burn_tf.methods.base import MethodConfig, PretrainMethod
from burn_tf.methods.burn import BURN, BURNConfig
from burn_tf.methods.byol import BYOL, BYOLConfig
from burn_tf.methods.cld import CLD, CLDConfig, CLDOnMoCo, CLDOnNPID
from burn_tf.methods.distillation import DistillationMethod
from burn_tf.methods.infomin import InfoMin, InfoMinConfig
from burn_tf.methods.moco import MoCoV2, MoCoV2Config
from burn_tf.methods.momentum import MomentumMethod
from burn_tf.methods.npid import NPID, NPIDConfig
from burn_tf.methods.registry import method_class, method_names, register
from burn_tf.methods.s2bnn import S2BNN, S2BNNConfig
from burn_tf.methods.simclr import SimCLRV2, SimCLRV2Config
from burn_tf.methods.supervised import Supervised, SupervisedConfig
from burn_tf.methods.supervised_kl import SupervisedKL, SupervisedKLConfig
from burn_tf.methods.swav import SwAV, SwAVConfig

__all__ = [
    "BURN",
    "BURNConfig",
    "BYOL",
    "BYOLConfig",
    "CLD",
    "CLDConfig",
    "CLDOnMoCo",
    "CLDOnNPID",
    "DistillationMethod",
    "InfoMin",
    "InfoMinConfig",
    "MethodConfig",
    "MoCoV2",
    "MoCoV2Config",
    "MomentumMethod",
    "NPID",
    "NPIDConfig",
    "PretrainMethod",
    "S2BNN",
    "S2BNNConfig",
    "SimCLRV2",
    "SimCLRV2Config",
    "Supervised",
    "SupervisedConfig",
    "SupervisedKL",
    "SupervisedKLConfig",
    "SwAV",
    "SwAVConfig",
    "method_class",
    "method_names",
    "register",
]
