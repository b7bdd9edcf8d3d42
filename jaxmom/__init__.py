"""jaxmom: momentum-centred first-order optimizers for JAX, as Optax gradient transformations.

``import jaxmom`` gives the optimizer library only. The sweep engine is :mod:`jaxmom.sweep`; the
MNIST study and the tutorials' helpers are under :mod:`jaxmom.studies` (the ``study`` extra).
"""

import importlib.metadata

from jaxmom._adadelta import ScaleByAdadeltaState as ScaleByAdadeltaState
from jaxmom._adadelta import adadelta as adadelta
from jaxmom._adadelta import scale_by_adadelta as scale_by_adadelta
from jaxmom._adagrad import ScaleByAdagradState as ScaleByAdagradState
from jaxmom._adagrad import adagrad as adagrad
from jaxmom._adagrad import scale_by_adagrad as scale_by_adagrad
from jaxmom._adam import ScaleByAdamState as ScaleByAdamState
from jaxmom._adam import ScaleByAmsgradState as ScaleByAmsgradState
from jaxmom._adam import adam as adam
from jaxmom._adam import scale_by_adam as scale_by_adam

# the rest of the momentum family (issue 10)
from jaxmom._adamax import ScaleByAdamaxState as ScaleByAdamaxState
from jaxmom._adamax import adamax as adamax
from jaxmom._adamax import scale_by_adamax as scale_by_adamax
from jaxmom._adamw import adamw as adamw
from jaxmom._aggmo import ScaleByAggmoState as ScaleByAggmoState
from jaxmom._aggmo import aggmo as aggmo
from jaxmom._aggmo import scale_by_aggmo as scale_by_aggmo
from jaxmom._base import ScaleByLearningRateState as ScaleByLearningRateState
from jaxmom._base import add_weight_decay as add_weight_decay
from jaxmom._base import scale_by_learning_rate as scale_by_learning_rate
from jaxmom._ema import EmaState as EmaState
from jaxmom._ema import ema as ema
from jaxmom._ema import ema_sgd as ema_sgd
from jaxmom._lion import ScaleByLionState as ScaleByLionState
from jaxmom._lion import lion as lion
from jaxmom._lion import scale_by_lion as scale_by_lion
from jaxmom._nadam import ScaleByNadamState as ScaleByNadamState
from jaxmom._nadam import nadam as nadam
from jaxmom._nadam import scale_by_nadam as scale_by_nadam
from jaxmom._qhadam import ScaleByQhadamState as ScaleByQhadamState
from jaxmom._qhadam import qhadam as qhadam
from jaxmom._qhadam import scale_by_qhadam as scale_by_qhadam
from jaxmom._qhm import ScaleByQhmState as ScaleByQhmState
from jaxmom._qhm import qhm as qhm
from jaxmom._qhm import scale_by_qhm as scale_by_qhm
from jaxmom._radam import ScaleByRadamState as ScaleByRadamState
from jaxmom._radam import radam as radam
from jaxmom._radam import scale_by_radam as scale_by_radam
from jaxmom._rmsprop import ScaleByRmsState as ScaleByRmsState
from jaxmom._rmsprop import ScaleByRStdDevState as ScaleByRStdDevState
from jaxmom._rmsprop import rmsprop as rmsprop
from jaxmom._rmsprop import scale_by_rms as scale_by_rms
from jaxmom._schedule_free import ScheduleFreeSgdState as ScheduleFreeSgdState
from jaxmom._schedule_free import scale_by_schedule_free_sgd as scale_by_schedule_free_sgd
from jaxmom._schedule_free import schedule_free_eval_params as schedule_free_eval_params
from jaxmom._schedule_free import schedule_free_sgd as schedule_free_sgd
from jaxmom._sgd import ScaleByMomentumState as ScaleByMomentumState
from jaxmom._sgd import scale_by_momentum as scale_by_momentum
from jaxmom._sgd import sgd as sgd
from jaxmom._sutskever_sgd import sutskever_sgd as sutskever_sgd
from jaxmom.conventions import CONVENTIONS as CONVENTIONS
from jaxmom.conventions import convert_momentum as convert_momentum

try:
    __version__ = importlib.metadata.version("jaxmom")
except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"
