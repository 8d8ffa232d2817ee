"""Galleries on disk and in memory: the array types ``protect`` takes (``arrays``), row-streaming
``.npy`` reading and writing (``npy``), resumable protected outputs (``streaming``) and PNG grids
(``png``)."""
