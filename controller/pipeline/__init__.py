"""The one path every change takes: source -> desired -> observed -> plan -> policy ->
apply -> record.

``apply``, ``rollback``, ``serve`` (its passes and approvals), ``review`` and, next, the
agent all go through these stages; none calls the engine's writers directly, so nothing
reaches a node without having passed the policy stage:

* :mod:`source`: the documents loaded and validated, the Policy kind known;
* :mod:`desired`: the documents bound to what FazAI owns, plus prune's deletions;
* :mod:`planning`: every node read and compared, then the policies' verdicts attached
  (:mod:`policy` is the seam to the evaluator in ``controller.policy``);
* :mod:`gate`: what the verdicts allow: a deny stops the whole plan, a
  ``requireApproval`` turns an automatic apply into a pending approval;
* :mod:`writes`: the engine's transactions (apply, approved apply, rollback), each of
  which refuses a plan the gate does not let through, and the recovery of what a killed
  run left half written (ungated: it only restores a recorded snapshot).

Each stage hands the next a frozen value (``Desired``, ``Checked``, the engine's
``ApplyResult``); the run it is checked for is a :class:`~controller.plan.verdicts.RunContext`
(see :mod:`context`).
"""
