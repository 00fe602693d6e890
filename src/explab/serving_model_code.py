"""The file MLflow runs to load an explab model ("models from code"): it names the model class.

Logged beside the model's artifacts instead of a pickled object, so loading runs no pickle; the class
itself is explab's, imported from the installed package (``--env-manager local``).
"""

from mlflow.models import set_model

from explab.serving import RawInputModel

set_model(RawInputModel())
