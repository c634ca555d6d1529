"""Ocean's mapping language: config models, the jq compiler and the entity engine."""
