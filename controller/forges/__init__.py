"""Code forges: pull requests as change requests, and pushes as reconcile triggers.

* :mod:`review` plans a pull request's head and its base against one live read of each
  node and marks what the head introduces, changes, or leaves pending;
* :mod:`github`, :mod:`gitlab`, :mod:`gitea` talk to each forge's REST API (one plan
  comment per pull request, updated in place; a commit status on the head);
* :mod:`webhooks` verifies and parses push deliveries for ``fazai serve``;
* :mod:`settings` reads the ``forges`` section of ``fazai.yaml``.
"""

FORGES = ("github", "gitlab", "gitea")
