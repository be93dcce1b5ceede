from model_core.data.performer.identity import identity_fingerprint, sample_identity, split_of


def test_thousands_of_distinct_identities():
    looks = {identity_fingerprint(sample_identity(i)) for i in range(2000)}
    assert len(looks) == 2000


def test_identity_is_a_pure_function_of_seed_and_index():
    assert sample_identity(17, seed=3) == sample_identity(17, seed=3)
    assert sample_identity(17, seed=3) != sample_identity(17, seed=4)


def test_held_out_identities_are_every_tenth():
    assert [split_of(i) for i in range(20)].count("heldout") == 2
    assert sample_identity(9).split == "heldout" and sample_identity(8).split == "train"
