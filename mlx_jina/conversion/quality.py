"""How close quantized embeddings are to float ones, on a built-in multilingual set.

The set has 100 texts in 10 languages (30 short queries, 70 sentences) plus two long
passages of about 2K tokens built by joining the sentences, so both prompts, short and
long inputs, and CJK scripts are covered. The report gives the min and mean cosine between
quantized and float vectors of the same text, and how many of each text's 10 nearest
neighbours stay the same.
"""

import numpy as np

QUERIES = [
    "Which planet is known as the Red Planet?",
    "How do vaccines train the immune system?",
    "What is the capital of Australia?",
    "Why is the sky blue?",
    "Who wrote Pride and Prejudice?",
    "How many bones does an adult human have?",
    "Wie funktioniert eine Wärmepumpe?",
    "Wann fiel die Berliner Mauer?",
    "Was ist die längste Brücke Europas?",
    "Quelle est la hauteur de la tour Eiffel ?",
    "Comment fonctionne la photosynthèse ?",
    "Qui a peint la Joconde ?",
    "¿Cuál es el río más largo del mundo?",
    "¿Cómo se prepara una paella valenciana?",
    "¿Qué idioma se habla en Brasil?",
    "长城有多长？",
    "如何学习中文书法？",
    "熊猫吃什么？",
    "富士山の高さはどれくらいですか？",
    "東京で一番古いお寺はどこですか？",
    "寿司の歴史を教えてください。",
    "Qual é a maior floresta tropical do mundo?",
    "Quando foi fundada a cidade de Lisboa?",
    "Chi ha scritto la Divina Commedia?",
    "Come si fa il tiramisù?",
    "Кто написал роман «Война и мир»?",
    "Почему зимой холодно?",
    "김치는 어떻게 만드나요?",
    "한국의 수도는 어디인가요?",
    "What does a heat pump cost to run in winter?",
]

DOCUMENTS = [
    "Mars is often called the Red Planet because iron oxide colours its surface.",
    "Vaccines expose the immune system to a harmless piece of a pathogen so it learns to react.",
    "Canberra, not Sydney, is the capital city of Australia.",
    "Sunlight scatters off air molecules, and blue light scatters the most.",
    "Jane Austen published Pride and Prejudice in 1813.",
    "An adult human skeleton usually has 206 bones.",
    "The recipe needs two cups of flour, one egg and a pinch of salt.",
    "Interest rates rose for the third time this year, the central bank said.",
    "The new phone has a larger battery but a slower charger.",
    "Regular exercise lowers the risk of heart disease.",
    "Eine Wärmepumpe nutzt Umgebungswärme und hebt sie mit Strom auf ein höheres Niveau.",
    "Die Berliner Mauer fiel am 9. November 1989.",
    "Der Zug nach München hat heute zwanzig Minuten Verspätung.",
    "Im Herbst färben sich die Blätter der Bäume gelb und rot.",
    "Das Museum ist montags geschlossen.",
    "Viele Studierende arbeiten neben dem Studium in einem Café.",
    "La tour Eiffel mesure environ 330 mètres avec ses antennes.",
    "La photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucres.",
    "Léonard de Vinci a peint la Joconde au début du XVIe siècle.",
    "Le marché du samedi propose des fromages de toute la région.",
    "Il pleut souvent en Bretagne, même en été.",
    "Le nouveau musée ouvrira ses portes au printemps prochain.",
    "El Nilo y el Amazonas compiten por el título de río más largo del mundo.",
    "La paella valenciana lleva arroz, pollo, conejo, judías verdes y azafrán.",
    "En Brasil se habla portugués.",
    "El equipo ganó el partido en el último minuto.",
    "La biblioteca municipal amplía su horario durante los exámenes.",
    "Madrid tiene uno de los museos de arte más visitados de Europa.",
    "长城是中国古代修建的防御工程，总长度超过两万公里。",
    "学习书法需要耐心，每天练习基本笔画。",
    "大熊猫主要以竹子为食。",
    "今天北京的天气晴朗，气温适中。",
    "这家餐厅的饺子非常好吃。",
    "人工智能正在改变许多行业的工作方式。",
    "富士山の標高は3776メートルです。",
    "浅草寺は東京で最も古い寺として知られています。",
    "寿司は江戸時代に屋台の料理として広まりました。",
    "明日は雨が降るので傘を持って行きましょう。",
    "この電車は新宿駅に止まります。",
    "桜の季節には多くの人が公園に集まります。",
    "A Amazônia é a maior floresta tropical do planeta.",
    "Lisboa é uma das cidades mais antigas da Europa Ocidental.",
    "O café da manhã é servido das sete às dez.",
    "Dante Alighieri scrisse la Divina Commedia all'inizio del Trecento.",
    "Il tiramisù si prepara con savoiardi, caffè, mascarpone e cacao.",
    "Il treno per Firenze parte dal binario tre.",
    "Лев Толстой написал роман «Война и мир».",
    "Зимой Земля получает меньше солнечного тепла из-за наклона оси.",
    "Москва — крупнейший город России.",
    "김치는 배추를 소금에 절인 뒤 양념을 버무려 만듭니다.",
    "서울은 대한민국의 수도입니다.",
    "오늘 회의는 오후 세 시에 시작합니다.",
    "Running a heat pump in winter costs less than direct electric heating.",
    "The hotel offers free parking and a late checkout on request.",
    "Photosynthesis happens in the chloroplasts of plant cells.",
    "The Great Wall of China was built over many centuries.",
    "Giant pandas spend most of the day eating bamboo.",
    "Mount Fuji last erupted in 1707.",
    "The Amazon rainforest produces a large share of the world's oxygen.",
    "Leonardo da Vinci was also an engineer and an anatomist.",
    "Der Eiffelturm wurde für die Weltausstellung 1889 gebaut.",
    "La Grande Muraille est visible depuis de nombreux sommets autour de Pékin.",
    "El Monte Fuji es la montaña más alta de Japón.",
    "Il sistema immunitario impara a riconoscere i virus grazie ai vaccini.",
    "A Torre Eiffel fica em Paris, às margens do rio Sena.",
    "Marsは地球の外側を回る惑星です。",
    "火星因表面的氧化铁而呈现红色。",
    "Каждая клетка растения содержит хлоропласты.",
    "단풍이 드는 가을에는 산을 찾는 사람이 많습니다.",
    "The library lends books, films and board games for free.",
]

LANGUAGES = ("en", "de", "fr", "es", "zh", "ja", "pt", "it", "ru", "ko")
PASSAGE_TOKENS = 2000


def passages(token_counts: list[int]) -> list[str]:
    """Two passages of about PASSAGE_TOKENS tokens: the sentences joined in order, then
    reversed, until their token counts (`token_counts[i]` for DOCUMENTS[i]) add up."""
    out = []
    for order in (range(len(DOCUMENTS)), range(len(DOCUMENTS) - 1, -1, -1)):
        parts, total, i = [], 0, 0
        while total < PASSAGE_TOKENS:
            j = order[i % len(DOCUMENTS)]
            parts.append(DOCUMENTS[j])
            total, i = total + token_counts[j], i + 1
        out.append(" ".join(parts))
    return out


def texts_for(embedder) -> tuple[list[str], list[str]]:
    """(queries, documents) of the set, passages sized with `embedder`'s tokenizer."""
    counts = [len(ids) for ids in embedder.tokenize(DOCUMENTS)]
    return QUERIES, DOCUMENTS + passages(counts)


def embed_set(embedder, task: str | None = None) -> np.ndarray:
    """Float32 vectors for the queries ("query" prompt), then sentences and passages ("document")."""
    kwargs = {} if task is None else {"task": task}
    queries, documents = texts_for(embedder)
    q = embedder.encode_query(queries, **kwargs)
    d = embedder.encode_document(documents, **kwargs)
    return np.concatenate([q, d]).astype(np.float32)


def compare(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict:
    """Per-text cosine between the two sets, and the share of top-`k` neighbours kept."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    kept = []
    for sim_a, sim_b, i in zip(a @ a.T, b @ b.T, range(len(a))):
        sim_a[i] = sim_b[i] = -np.inf  # a text is not its own neighbour
        top_a = set(np.argsort(-sim_a)[:k])
        kept.append(len(top_a & set(np.argsort(-sim_b)[:k])) / k)
    return {
        "texts": len(a),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        f"top{k}_agreement": float(np.mean(kept)),
    }


def markdown_table(rows: list[dict]) -> str:
    """One table row per report from `compare` (plus "weights" and "reference" keys)."""
    lines = [
        "| weights | compared with | texts | min cosine | mean cosine | top-10 neighbours kept |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['weights']} | {r['reference']} | {r['texts']} | {r['min_cosine']:.4f} | "
            f"{r['mean_cosine']:.4f} | {r['top10_agreement']:.1%} |"
        )
    return "\n".join(lines)
