"""Models: the MaxToki decoder in pure torch (no AnnData, no distributed code)."""
