"""`python -m keras_logits.cli`: the console script's entry point."""

import sys

from keras_logits.cli._main import main

sys.exit(main())
