"""Preprocessing: AnnData of raw counts → MaxToki tokens and temporal prompts."""

from .._vocab import GeneVocab
from ._gene_ids import map_gene_ids
from ._gene_medians import gene_medians
from ._prompts import PromptEncoder
from ._read_tokenized import read_tokenized
from ._token_store import TokenStore
from ._tokenize import tokenize
from ._tokenize_corpus import tokenize_corpus
from ._trajectories import trajectories

__all__ = [
    "GeneVocab",
    "PromptEncoder",
    "TokenStore",
    "gene_medians",
    "map_gene_ids",
    "read_tokenized",
    "tokenize",
    "tokenize_corpus",
    "trajectories",
]
