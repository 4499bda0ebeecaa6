"""The plan's vocabulary, a leaf that providers, the engine, the policy stage and every
output import: the diff (essence, observed, action, change), the plan's types, the
policies' verdicts, and the plan's JSON form with its schema."""
