import pytest
import torch

from attnexplain.data import TextPipeline, Vocabulary, bucketed_batches, collate, tokenize
from attnexplain.data.text import EOS_ID, PAD_ID, SOS_ID, UNK_ID
from attnexplain.errors import InvalidInputError


def test_tokenize_lowercases_splits_punctuation_and_contractions():
    assert tokenize("Don't pay for it, OK?") == ["do", "n't", "pay", "for", "it", ",", "ok", "?"]


def test_tokens_with_digits_become_qqq():
    assert tokenize("Top 10 of 2019: 3D films, $5.") == [
        "top",
        "qqq",
        "of",
        "qqq",
        ":",
        "qqq",
        "films",
        ",",
        "$",
        "qqq",
        ".",
    ]


def test_html_breaks_and_entities_are_cleaned():
    assert tokenize("Great<br /><br />film &amp; cast") == ["great", "film", "&", "cast"]


def test_vocabulary_keeps_tokens_by_document_frequency():
    docs = [["a", "b", "b"], ["a", "c"], ["a", "b"]]
    vocab = Vocabulary.build(docs, min_df=2)
    assert vocab.itos == ["<PAD>", "<UNK>", "<SOS>", "<EOS>", "a", "b"]
    assert vocab.ids(["a", "c", "b"]) == [4, UNK_ID, 5]


def test_pipeline_wraps_with_sos_eos_and_maps_unknown():
    pipeline = TextPipeline.fit(["good film", "bad film"])
    ids = pipeline.encode("Good unseen film")
    assert ids[0] == SOS_ID and ids[-1] == EOS_ID
    assert ids[2] == UNK_ID
    assert pipeline.decode(ids) == ["<SOS>", "good", "<UNK>", "film", "<EOS>"]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_a_clear_error(text):
    pipeline = TextPipeline.fit(["good film"])
    with pytest.raises(InvalidInputError, match="no tokens"):
        pipeline.encode(text)


def test_collate_pads_and_masks_sos_eos_pad():
    batch = collate([[SOS_ID, 5, 6, 7, EOS_ID], [SOS_ID, 8, EOS_ID]], labels=[1, 0])
    assert batch.token_ids.tolist() == [[2, 5, 6, 7, 3], [2, 8, 3, PAD_ID, PAD_ID]]
    assert batch.lengths.tolist() == [5, 3]
    assert batch.content_mask.tolist() == [
        [False, True, True, True, False],
        [False, True, False, False, False],
    ]
    assert batch.labels.tolist() == [1, 0]


def test_bucketed_batches_cover_every_row_once_with_similar_lengths():
    sequences = [[SOS_ID, *([9] * n), EOS_ID] for n in torch.randint(1, 60, (500,)).tolist()]
    batches = list(bucketed_batches(sequences, list(range(500)), batch_size=32, shuffle_seed=1))
    seen = torch.cat([b.index for b in batches]).sort().values
    assert seen.tolist() == list(range(500))
    for batch in batches:  # labels travel with their rows
        assert batch.labels.tolist() == batch.index.tolist()
    spread = [int(b.lengths.max() - b.lengths.min()) for b in batches]
    assert sum(spread) / len(spread) < 10  # bucketed: far below the 58 of random batches


def test_bucketed_batches_are_deterministic_per_seed():
    sequences = [[SOS_ID, *([9] * (n % 17 + 1)), EOS_ID] for n in range(300)]
    first = [b.index.tolist() for b in bucketed_batches(sequences, shuffle_seed=4)]
    again = [b.index.tolist() for b in bucketed_batches(sequences, shuffle_seed=4)]
    other = [b.index.tolist() for b in bucketed_batches(sequences, shuffle_seed=5)]
    assert first == again and first != other
