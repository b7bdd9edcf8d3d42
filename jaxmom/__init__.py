"""jaxmom: momentum-centred first-order optimizers for JAX, as Optax gradient transformations."""

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
from jaxmom._base import ScaleByLearningRateState as ScaleByLearningRateState
from jaxmom._base import add_weight_decay as add_weight_decay
from jaxmom._base import scale_by_learning_rate as scale_by_learning_rate
from jaxmom._ema import EmaState as EmaState
from jaxmom._ema import ema as ema
from jaxmom._ema import ema_sgd as ema_sgd
from jaxmom._rmsprop import ScaleByRmsState as ScaleByRmsState
from jaxmom._rmsprop import ScaleByRStdDevState as ScaleByRStdDevState
from jaxmom._rmsprop import rmsprop as rmsprop
from jaxmom._rmsprop import scale_by_rms as scale_by_rms
from jaxmom._sgd import ScaleByMomentumState as ScaleByMomentumState
from jaxmom._sgd import scale_by_momentum as scale_by_momentum
from jaxmom._sgd import sgd as sgd
from jaxmom._sutskever_sgd import sutskever_sgd as sutskever_sgd
from jaxmom.conventions import CONVENTIONS as CONVENTIONS
from jaxmom.conventions import convert_momentum as convert_momentum

__version__ = "0.1.0"
