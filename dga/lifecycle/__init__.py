"""A model's life after training: the one pipeline (train -> test -> bundle -> tune), `dga train`,
decoder tuning, the registry, the zoo."""
