"""theory/ja/, the Japanese edition of theory/, is kept in step with the English documents: the
same documents, the same claim labels in each (found by the English test's own regex, and each
tied to a test), the same headings in the same order, the same code blocks, display formulas and
runnable examples, and the Japanese examples print what their text says."""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "theory"
JA = THEORY / "ja"


def _english_test():
    """tests/test_theory.py loaded under another name, so that the Japanese edition is read with
    exactly the regexes (CLAIM, EXAMPLE) and the claim-mark parser the English test uses."""
    spec = importlib.util.spec_from_file_location("_theory_en", ROOT / "tests" / "test_theory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EN = _english_test()
ENGLISH = sorted(THEORY.glob("*.md"))
JAPANESE = sorted(JA.glob("*.md"))
PAIRS = [(doc, JA / doc.name) for doc in ENGLISH]
FENCE = re.compile(r"^```[^\n]*\n.*?^```", re.S | re.M)
DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
HEADING = re.compile(r"^(#{1,6}) +(.*)$", re.M)
NUMBER = re.compile(r"\d+(?:\.\d+)*(?=[ .]|$)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
JAPANESE_CHAR = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
LATIN_CHAR = re.compile(r"[A-Za-z]")

# The seeds' terms and spellings the Japanese glossary must carry (issue 21), and the English
# glossary's own.
GLOSSARY_TERMS = [
    "勾配", "勾配降下法", "確率的勾配降下法", "学習率", "ヤコビ行列", "局所的な計算", "3階のテンソル",
    "帰納法の仮定", "順伝播型ネットワーク", "レイヤ", "層", "乗算レイヤ", "加算レイヤ", "恒等関数",
    "教師データ", "one-hot", "推論", "学習", "ゲート", "段階的計算", "複製", "有向非巡回グラフ", "パス",
    "正則化", "重み減衰", "ドロップアウト", "バッチ正規化", "過学習", "重みの初期値",
    "ハイパーパラメータ", "コスト関数", "チェインルール", "順伝搬", "逆伝搬", "クロスエントロピー損失",
    "誤差逆伝播法", "計算グラフ", "順伝播", "逆伝播", "勾配確認", "数値微分", "連鎖律", "偏微分",
    "合成関数", "帰納法による証明", "動的計画法", "勾配消失", "丸め誤差", "有理数", "損失関数",
    "交差エントロピー誤差", "2乗和誤差", "ミニバッチ", "重み", "バイアス", "活性化関数", "メッセージ",
    "ノード",
]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(source: str) -> str:
    """The text outside code blocks, display formulas, inline code and inline math."""
    source = DISPLAY.sub(" ", FENCE.sub(" ", source))
    return re.sub(r"`[^`\n]*`|\$[^$\n]*\$", " ", source)


def headings(source: str) -> list[tuple[str, str]]:
    """(level, section number or '') of every heading outside code blocks, in order."""
    found = []
    for hashes, title in HEADING.findall(FENCE.sub("", source)):
        number = NUMBER.match(title)
        found.append((hashes, number.group(0) if number else ""))
    return found


def claims(source: str) -> list[str]:
    return EN.CLAIM.findall(source)


def test_every_english_document_has_a_japanese_one_and_no_other():
    assert [d.name for d in JAPANESE] == [d.name for d in ENGLISH]


@pytest.mark.parametrize("english,japanese", PAIRS, ids=lambda d: d.name)
def test_the_same_claims_in_the_same_order(english, japanese):
    ja = claims(text(japanese))
    assert len(ja) == len(set(ja)), f"{japanese.name}: a claim stated twice"
    assert ja == claims(text(english)), japanese.name


def test_every_japanese_claim_is_tied_to_a_test():
    tested = EN.claims_in_tests()
    untested = sorted({label for doc in JAPANESE for label in claims(text(doc))} - tested)
    assert not untested, f"claims of theory/ja/ without a test: {untested}"


@pytest.mark.parametrize("english,japanese", PAIRS, ids=lambda d: d.name)
def test_the_same_headings_in_the_same_order(english, japanese):
    assert headings(text(japanese)) == headings(text(english)), japanese.name


@pytest.mark.parametrize("english,japanese", PAIRS, ids=lambda d: d.name)
def test_the_same_code_blocks_and_display_formulas(english, japanese):
    en, ja = text(english), text(japanese)
    assert EN.EXAMPLE.findall(ja) == EN.EXAMPLE.findall(en), "examples differ"
    assert FENCE.findall(ja) == FENCE.findall(en), "code blocks or printed output differ"
    assert DISPLAY.findall(ja) == DISPLAY.findall(en), "display formulas differ"


@pytest.mark.parametrize("english,japanese", PAIRS, ids=lambda d: d.name)
def test_the_prose_is_japanese(english, japanese):
    """A translation, not a copy: most letters of the prose are kana or kanji."""
    body = prose(text(japanese))
    ja, latin = len(JAPANESE_CHAR.findall(body)), len(LATIN_CHAR.findall(body))
    assert ja > 1.5 * latin, f"{japanese.name}: {ja} Japanese characters, {latin} Latin letters"


@pytest.mark.parametrize("japanese", JAPANESE, ids=lambda d: d.name)
def test_links_resolve(japanese):
    """Figures are reached as ../../figures/, the documents beside each other; every relative
    link points at a file that exists."""
    for target in LINK.findall(FENCE.sub("", text(japanese))):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (japanese.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{japanese.name}: broken link {target}"
        if "figures/" in target:
            assert target.startswith("../../figures/"), target


def test_the_glossary_carries_the_seeds_terms():
    source = text(JA / "README.md")
    glossary = source[source.index("## 用語集"):]
    missing = [term for term in GLOSSARY_TERMS if term not in glossary]
    assert not missing, f"terms missing from the glossary: {missing}"
    english = text(THEORY / "README.md")
    rows = [line for line in english[english.index("## Glossary"):].splitlines()
            if line.startswith("| ") and not line.startswith("| English")]
    for row in rows:        # every English glossary entry has its row in the Japanese one
        assert f"| {row.split('|')[1].strip()} |" in glossary, row


def test_the_readmes_link_each_other_and_every_document():
    readme = text(JA / "README.md")
    for doc in JAPANESE:
        if doc.name != "README.md":
            assert f"]({doc.name})" in readme, doc.name
    assert "](../README.md)" in readme
    assert "](ja/README.md)" in text(THEORY / "README.md"), "theory/README.md must link theory/ja/"


@pytest.mark.parametrize("doc", [d for d in JAPANESE if EN.EXAMPLE.search(text(d))],
                         ids=lambda d: d.name)
def test_japanese_examples_print_what_the_text_says(doc):
    for code, shown in EN.EXAMPLE.findall(text(doc)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(doc), "exec"), {})
        assert out.getvalue().strip() == shown.strip(), doc.name
