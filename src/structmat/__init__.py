"""structmat: structured-matrix methods for fast sequence models and retrieval.

Areas (each a subpackage): ``ssm`` (S4, S4D), ``rope`` (1D, 2D, general RoPE),
``attention`` (softmax, linear, Nyström, cost model), ``retrieval`` (CUR indexes
for cross-encoder scorers), ``gaussian`` (distances between normals, FID),
``orthogonal`` (maps taking a to b); around them ``models``, ``tasks`` and
``train``. ``structmat.retrieval`` is imported on use (its scorers pull optional
packages).
"""

from structmat import attention, gaussian, models, orthogonal, rope, ssm, tasks
from structmat.attention import (
    MultiHeadAttention,
    linear_attention,
    nystrom_attention,
    softmax_attention,
)
from structmat.gaussian import (
    GaussianMoments,
    bhattacharyya_distance,
    frechet_distance,
    hellinger_distance,
    kl_divergence,
    wasserstein2,
)
from structmat.orthogonal import reflect, reflection, rotate, rotation
from structmat.rope import (
    RotaryEmbedding,
    RotaryEmbedding2D,
    apply_rotary,
    apply_rotary_2d,
    general_rotary,
    to_standard,
)
from structmat.ssm import S4, hippo, nplr, ssm_parameter_groups

__version__ = "0.1.0"

__all__ = [
    "S4",
    "GaussianMoments",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "apply_rotary",
    "apply_rotary_2d",
    "attention",
    "bhattacharyya_distance",
    "frechet_distance",
    "gaussian",
    "general_rotary",
    "hellinger_distance",
    "hippo",
    "kl_divergence",
    "linear_attention",
    "models",
    "nplr",
    "nystrom_attention",
    "orthogonal",
    "reflect",
    "reflection",
    "rope",
    "rotate",
    "rotation",
    "softmax_attention",
    "ssm",
    "ssm_parameter_groups",
    "tasks",
    "to_standard",
    "wasserstein2",
]
