"""EFTNAS for BERT-style encoders (Munoz et al., LREC-COLING 2024): importance, search space
generation, weight reordering, super-network and search. NNCF is imported only inside this package
(``nas.movement``, inside its functions).

Done so far: movement-sparsity importance through NNCF 2.19 reduced to heads and neurons
(``nas.movement``), the search-space generator (``nas.search_space``), importance-ordered weight
reordering (``nas.reorder``), NSGA-II search over a search space with pymoo (``nas.search``) and
subnetwork extraction (``nas.extract``). The super-network and its training, ONNX export and the
explorer tab are not written yet (see the EFTNAS issue).
"""

from .extract import extract_subnetwork, subnetwork_plan
from .reorder import reorder_by_importance
from .search import Candidate, nsga2_search, pareto_front
from .search_space import SearchSpace, encoder_macs, generate_search_space, search_space_figure, widths_at_threshold

__all__ = ["Candidate", "SearchSpace", "encoder_macs", "extract_subnetwork", "generate_search_space", "nsga2_search",
           "pareto_front", "reorder_by_importance", "search_space_figure", "subnetwork_plan", "widths_at_threshold"]
