"""AdvFace where deployed systems keep their templates.

- :mod:`.postgres_table`: protect a PostgreSQL table's embedding column in place, resumably.
- :mod:`.vector_index`: protect a gallery into a FAISS index (1:N search over protected templates).
- :mod:`.service`: the service (Ray Serve + FastAPI): protect, enrol, verify and identify over HTTP.

Each needs its extra (``postgres``, ``faiss``, ``serve``); importing this package needs none.
"""
