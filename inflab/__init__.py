"""inflab: a terminal lab for ML inference on AWS accelerators."""

import warnings

__version__ = "0.1.0"

# cryptography 51 deprecates DSA, and asyncssh still defines its DSA key classes at import: a
# notice about an algorithm the lab never uses (its keys are ed25519) must not reach the screen,
# where a bad-input message is one line.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
