"""EFTNAS for BERT-style encoders (Munoz et al., LREC-COLING 2024): importance, search space
generation, weight reordering, super-network and search. NNCF is imported only inside this package.

Done so far: the search-space generator (``nas.search_space``), importance-ordered weight
reordering (``nas.reorder``) and subnetwork extraction (``nas.extract``); movement-sparsity importance,
the super-network, search and the
explorer tab are not written yet (see the EFTNAS issue).
"""

from .extract import extract_subnetwork, subnetwork_plan
from .reorder import reorder_by_importance
from .search_space import SearchSpace, encoder_macs, generate_search_space, search_space_figure, widths_at_threshold

__all__ = ["SearchSpace", "encoder_macs", "extract_subnetwork", "generate_search_space", "reorder_by_importance",
           "search_space_figure", "subnetwork_plan",
           "widths_at_threshold"]
