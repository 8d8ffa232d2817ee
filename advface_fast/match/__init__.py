"""Matching a probe against a protected gallery: verify (1:1) and identify (1:N) decisions at the
deployment's threshold, with the key's transform applied to the probe inside.

- :mod:`.config`: the deployment configuration (settings, threshold, the FAR it was fitted for);
- :mod:`.gallery`: a protected gallery as ``.npy``, FAISS index or PostgreSQL table, with its provenance;
- :mod:`.matcher`: :class:`~.matcher.Matcher`, the decisions;
- :mod:`.calibrate`: the threshold and eps of a deployment from the operator's own templates;
- :mod:`.rekey`: a protected gallery moved to a new key without re-enrolment.
"""

from .config import DeploymentConfig
from .gallery import ProtectedGallery, open_gallery
from .matcher import Decision, Matcher

__all__ = ["Decision", "DeploymentConfig", "Matcher", "ProtectedGallery", "open_gallery"]
