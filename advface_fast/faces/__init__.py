"""Real photographs: YuNet detection and alignment to the ArcFace template (``yunet``), aligning
photo files with a disk cache and a status per file (``align``), embedding aligned faces with a
cache (``embed``) and drawing verification pairs from identity folders (``protocol``)."""
