"""The verdict under the held-out table: what it says for each way champion and baseline can compare."""

from dga.lifecycle.heldout import Judged, Judgement, verdict


def _judgement(champion: tuple[float, float, float], seed: tuple[float, float, float]) -> Judgement:
    rows = [Judged("champion", "champion (trial 9)", champion[0], champion[1], 0.3, champion[2], "/c"),
            Judged("seed", "seed (trial 0)", seed[0], seed[1], 0.4, seed[2], "/s/bundle")]
    return Judgement(["dmau"], 1_000_000, 81, rows, floor_accuracy=0.29)


def test_the_verdict_names_a_champion_that_leads_on_both_scores():
    (said,) = verdict(_judgement((0.81, 0.85, 0.75), (0.78, 0.84, 0.74)))
    assert said.startswith("the champion beats seed (trial 0) on genic and exon F1 (genic F1 0.8100 vs 0.7800")


def test_a_split_verdict_says_which_score_each_leads_and_where_the_other_model_is():
    (said,) = verdict(_judgement((0.8067, 0.8366, 0.77), (0.7776, 0.8535, 0.74)))
    assert said.startswith("neither the champion nor seed (trial 0) decodes better on both: the champion leads on "
                           "genic F1 and trails on exon F1 (genic F1 0.8067 vs 0.7776, exon F1 0.8366 vs 0.8535)")
    assert "/s/bundle" in said
    (said,) = verdict(_judgement((0.79, 0.849, 0.74), (0.834, 0.842, 0.80)))
    assert "the champion leads on exon F1 and trails on genic F1" in said


def test_a_baseline_better_on_both_is_named_with_its_folder_and_a_champion_below_the_floor_is_flagged():
    floor, said = verdict(_judgement((0.70, 0.70, 0.20), (0.80, 0.80, 0.70)))
    assert "does not beat calling every base intergenic (0.2900)" in floor
    assert said.startswith("seed (trial 0) decodes better than the champion here (genic F1 0.7000 vs 0.8000")
    assert "that model is /s/bundle" in said


def test_a_decoder_alone_baseline_says_whether_the_network_helps():
    def with_prior(prior: tuple[float, float]) -> Judgement:
        rows = [Judged("champion", "champion (trial 10)", 0.8067, 0.8366, 0.33, 0.77, "/c"),
                Judged("decoder_alone", "decoder alone (trial 1)", prior[0], prior[1], 0.47, 0.78, "/p/bundle",
                       reads_dna=False)]
        return Judgement(["dmau"], 1_000_000, 81, rows, floor_accuracy=0.29)

    (said,) = verdict(with_prior((0.8209, 0.8603)))
    assert said.startswith("decoder alone (trial 1) decodes as well as or better than the champion (genic F1 0.8067 "
                           "vs 0.8209, exon F1 0.8366 vs 0.8603")
    assert "the network does not help the HMM" in said and "/p/bundle" in said
    (said,) = verdict(with_prior((0.80, 0.85)))
    assert said.startswith("decoder alone (trial 1) decodes better on one score than the champion")
    (said,) = verdict(with_prior((0.70, 0.70)))
    assert said.endswith("its network adds to what the decoder finds alone")
