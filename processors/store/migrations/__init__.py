"""Versioned CQL migrations ``NNNN_name.cql``, applied in order by processors.store.migrate."""
