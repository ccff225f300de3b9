"""Tools: a MaxToki model → annotations in AnnData (ages, generated cells, attention)."""
