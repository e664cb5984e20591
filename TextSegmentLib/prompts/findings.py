"""Findings (pathology) an anatomy model was not trained on: a request that names one is "not in this scan" for such a
model, whatever anatomy it also names ("brain tumor in the left frontal lobe" must not return the brain).

Example:
    >>> finding_in(["brain", "tumor", "left", "frontal", "lobe"]), finding_in(["left", "putamen"])
    ('tumor', None)
"""

import difflib
from typing import Iterable, Optional, Sequence

#: finding words (accent-free, lower case; plurals and adjectives included)
FINDINGS = set(
    """tumour tumours tumor tumors tumoral glioma gliomas glioblastoma glioblastomas gbm astrocytoma meningioma
    meningiomas metastasis metastases metastatic mets haematoma haematomas hematoma hematomas haemorrhage
    haemorrhages hemorrhage hemorrhages haemorrhagic hemorrhagic bleed bleeds bleeding infarct infarcts infarction
    infarctions stroke strokes ischemia ischaemia ischemic ischaemic lesion lesions cyst cysts cystic fracture
    fractures fractured nodule nodules aneurysm aneurysms abscess abscesses edema oedema cancer cancers carcinoma
    carcinomas neoplasm neoplasms neoplastic lymphoma lymphomas plaque plaques calcification calcifications
    malformation malformations avm mass masses contusion contusions hydrocephalus hyperintensity
    hyperintensities lacune lacunes lacunar cavernoma cavernomas schwannoma adenoma adenomas polyp polyps""".split()
)


#: words that make "for ..." the purpose of a request, not its target ("the brain for the tumour follow-up study")
PURPOSES = {
    "study", "studies", "analysis", "assessment", "evaluation", "research", "follow", "followup", "planning",
    "measurement", "quantification", "volumetry", "screening", "workup", "staging", "trial", "report",
}  # fmt: skip


#: words that deny what follows ("there is no visible lesion", "without haemorrhage"): a finding they deny is no target
NEGATIONS = {"no", "not", "without", "free", "absent", "absence", "excluding", "exclude", "excluded", "nor", "non"}
NEGATION_REACH = 3  # a denied finding follows its negation within this many words ("no visible acute lesion")


def finding_in(found: Sequence[str], known: Iterable[str] = ()) -> Optional[str]:
    """The first finding word of ``found`` (words of a prompt) that the vocabulary (``known`` words) does not name,
    including close misspellings of the longer ones ("haemorhage"); None if there is none. Words in a purpose
    clause ("for the tumour follow-up study") are not the request's target and are not looked at, nor is a finding
    the request denies ("there is no visible lesion", within ``NEGATION_REACH`` words of a negation).

    Example:
        >>> finding_in(["whole", "brain", "for", "tumour", "follow", "up", "study"]), finding_in(["tumour"])
        (None, 'tumour')
        >>> finding_in(["there", "is", "no", "visible", "lesion", "please", "find", "the", "putamen"])
    """
    known = set(known)
    denied = -10  # index of the last denied finding: "no haemorrhage or mass" denies both
    for i, w in enumerate(found):
        if w == "for" and any(p in PURPOSES for p in found[i + 1 :]):
            return None
        if w in known:
            continue
        chained = all(x in ("or", "and", "nor", "any") for x in found[denied + 1 : i]) and i - denied <= 3
        if chained or any(n in NEGATIONS for n in found[max(0, i - NEGATION_REACH) : i]):
            if w in FINDINGS:
                denied = i
            continue
        if w in FINDINGS:
            return w
        if len(w) >= 6 and difflib.get_close_matches(w, FINDINGS, n=1, cutoff=0.88):
            return w
    return None
