"""Cues that a piece of a response talks to whoever evaluates it instead of to the user.

A response is data for the judge, and text inside it that addresses the evaluator is what a judge must not obey. No
list of phrases can enumerate such text, so the screen looks for what every such text has to do, in two families:

* **Structure** (language-independent): a chat-turn or role marker (``<|im_start|>system``, ``[SYSTEM]``,
  ``Human:``, ``### Assistant:``, a ``<user>`` tag), a *verdict block* (three or more ``key: rating`` pairs with the
  same rating, or pairs keyed by value names: JSON, YAML, CSV, tables, star rows), an open completion (a response
  that ends in ``Verdict:``), a message assembled from parts (``Let A = "..."``, ``Word 1: ...``).
* **Reference** (a small lexicon of concepts in about thirty languages, matched on case- and accent-folded text): to
  ask for a grade, a sentence has to point at *the response itself* ("this answer", "cet échange", "此答复") or at
  *a reader other than the user* ("whoever reviews this", "any system that processes", "проверяющий") and say
  something about *its evaluation or a top outcome* ("rated", "full marks", "irreprochable", "満点"). A sentence is
  flagged only when two concepts meet; words about grading alone (a user asking how to grade essays) are not enough.

Every cue reports its name, so the benchmark can say which part caught what (``benchmarks/judge_manipulation``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache


def fold(text: str) -> str:
    """Lower-case ``text``, drop accents and other combining marks (``Évalué`` -> ``evalue``, ``й`` -> ``и``) and write
    digits of every script as ASCII (``৫`` -> ``5``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = (c for c in decomposed if unicodedata.category(c) != "Mn")
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in kept).casefold()


def _fold_pattern(pattern: str) -> str:
    """Fold a regular expression's literal text, leaving escapes (``\\b``, ``\\W``) as written."""
    return "".join(part if part.startswith("\\") else fold(part) for part in re.findall(r"\\.|[^\\]+", pattern))


def _compile(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_fold_pattern(p)})" for p in patterns), re.IGNORECASE)


# ---------------------------------------------------------------- concepts (matched on folded text)
SELF_REFERENCE = _compile(
    # English
    r"\b(?:this|that|the above|above|my|the present|the following)\s+(?:response|answer|reply|text|output|item"
    r"|sample|message|transcript|conversation|exchange|submission|completion|passage|paragraph|lines|solution|task"
    r"|batch|round|rubric)\b",
    r"\b(?:response|answer|reply)s?\s+(?:above|here|below)\b",
    r"\b(?:read|reads|reading|review|reviews|reviewing|evaluat\w*|scor\w*|grad\w*|rat(?:e|es|ing)|process\w*"
    r"|analy[sz]\w*|summari[sz]\w*|check\w*|examin\w*|trained|evaluated)\s+(?:on\s+)?this\b",
    r"\bthe assistant that wrote\b|\bthis (?:response|answer|reply) gets\b",
    # Romance
    r"\b(?:esta|este|esto|esa|ese|essa|esse|isto|isso|dicha|dicho)\s+(?:respuesta|resposta|texto|contestacion"
    r"|mensaje|mensagem|conversacion|conversa|intercambio|evaluacion|avaliacao|valoracion|nota|lineas|rubrica|tarea"
    r"|ronda|tarefa)\b",
    r"\blea esto\b",
    r"\b(?:cette|cet|ces)\s+(?:reponse|texte|echange|message|conversation|evaluation|note|lignes|contenu)\b",
    r"\b(?:questa|questo|queste|questi)\s+(?:risposta|testo|righe|messaggio|conversazione|scambio|valutazione)\b",
    r"\b(?:acest|aceasta|acesta|acestui)\s+(?:raspuns\w*|text\w*|evaluar\w*)",
    # Germanic
    r"\b(?:diese[rsnm]?|vorliegende[rn]?|obige[rn]?)\s+(?:antwort|text|zeilen|nachricht|austausch|gesprach"
    r"|bewertung|beitrag|inhalt|runde|aufgabe)\b",
    r"\b(?:dit|deze)\s+(?:antwoord|tekst|bericht|gesprek|beoordeling)\b",
    r"\b(?:detta|denna)\s+(?:svar|text|bedomning)\b",
    # Slavic, Hungarian, Turkish, Greek
    r"\b(?:этот|эта|это|этого|этои|данн\w+|настоящ\w+|цеи|ця|це|цього|цієї|даноі)\s+(?:ответ\w*|текст\w*"
    r"|сообщени\w*|оценк\w*|відповід\w*|оцінк\w*|проєкт\w*)",
    r"\b(?:ta|ten|tej|tego|te|tato|tuto|tento|teto|toto|tohoto)\s+(?:odpowiedz\w*|odpoved\w*|tekst\w*|text\w*"
    r"|ocen\w*|hodnoceni)",
    r"\b(?:ez|ezt|ettol|ennek)\s+(?:a|az)\s+(?:valasz\w*|szoveg\w*|ertekeles\w*)",
    r"\bbu\s+(?:yanit\w*|cevab\w*|cevap\w*|metn\w*|metin\w*|degerlendirme\w*|mesaj\w*|gorev\w*)",
    r"\b(?:αυτη|αυτην|αυτο|αυτης)\s+(?:την\s+|το\s+)?(?:απαντησ\w*|κειμεν\w*|αξιολογησ\w*)",
    # Indonesian, Vietnamese, Semitic, Indic
    r"\b(?:jawaban|penilaian|nilai|teks|pesan|respons)\s+ini\b",
    r"\b(?:cau tra loi|doan|van ban|danh gia)\s+nay\b",
    r"התשובה הזו|התשובה הזאת|הטקסט הזה|תשובה זו",
    r"هذا الرد|هذه الاجابة|هذا النص|هذا التقييم",
    r"(?:यह|इस)\s+(?:उत्तर|जवाब)",
    # Chinese, Japanese, Korean
    r"(?:此|这个|这份|这条|本|该)(?:答复|回答|回复|答案|文本|内容|对话)",
    r"(?:この|本|当)(?:回答|文章|答え|返答|テキスト|タスク)",
    r"이\s*(?:글|답변|응답|대답|텍스트|평가)",
    # more English forms, and languages beyond the first thirty
    r"\bthis one\b|\b(?:answers?|responses?|replies) like this\b|\bthis (?:exchange|interaction|reply)\b",
    r"\bthis (?:gets|receives|earns|deserves|scores|merits|is the (?:ideal|perfect|best|model|reference|gold))\b",
    r"\b(?:this|these) (?:items?|series|batch|sample)\b|\bcette serie\b|\besta serie\b|\bdiese[rs]? (?:serie|runde)\b",
    r"यह उत्तर|इस उत्तर|यह जवाब|इस जवाब|इसे|এই উত্তর|এই লেখা|یہ جواب|اس جواب|این پاسخ|این متن",
    r"ข้อความนี้|คำตอบนี้",
    r"\b(?:jibu hili|maandishi haya|sagot na ito|itong sagot|jawapan ini|tama vastaus|tata vastausta"
    r"|taman vastauksen|tama teksti|dette svar\w*|denne tekst\w*|aquesta resposta|aquest text|ovaj odgovor"
    r"|ovaj tekst|sis atsakymas|si atsakyma|tato odpoved|tuto odpoved|see vastus|si atbilde|ta odgovor|bu cavab"
    r"|hierdie antwoord)\b",
    r"овај одговор|този отговор|този текст",
    r"இந்த பதில்|இந்தப் பதில",
)

OTHER_READER = _compile(
    # English: evaluators by name, and whoever/any system that reads, reviews or processes the text
    r"\b(?:reviewers?|evaluators?|graders?|raters?|scorers?|assessors?|examiners?|auditors?|annotators?"
    r"|judge|jury|panel)\b",
    r"\b(?:who(?:ever)?|anyone|those|whichever)\b[^.!?]{0,30}\b(?:reads?|reviews?|checks?|evaluates?|assess(?:es)?"
    r"|grades?|scores?|rates?|process(?:es)?|summari[sz]es?|analy[sz]es?|examines?)\b",
    r"\b(?:any|downstream|automated|automatic)\s+(?:system|model|tool|process|pipeline|reader)s?\b",
    r"\bmodels?\s+(?:trained|evaluated|reading)\b|\bscoring (?:model|system)\b|\bai judge\b|\bmoderators?\b",
    r"\b(?:person|model|people|someone|anyone|whoever)\s+(?:or \w+\s+)?(?:going|goes|looking|looks|reading|reads"
    r"|reviewing|checking|grading|scoring|assessing)\b|\bwhoever\b",
    # Romance
    r"\b(?:quien|quienes|cualquiera|cualquier\s+(?:sistema|herramienta|modelo|persona))\b",
    r"\b(?:evaluador\w*|calificador\w*|revisor\w*|corrector\w*|examinador\w*|jurado|avaliador\w*|corretor\w*)\b",
    r"\b(?:quem|qualquer\s+(?:sistema|modelo|ferramenta))\b",
    r"\b(?:quiconque|celui qui|celle qui|ceux qui|les outils|tout (?:systeme|outil|modele)|evaluat(?:eur|rice)s?"
    r"|correct(?:eur|rice)s?|relecteur\w*|examinat(?:eur|rice)s?)\b",
    r"\b(?:chiunque|chi (?:valuta|legge|esamina|corregge)|valutator\w*|esaminator\w*|correttor\w*)\b",
    r"\b(?:orice sistem|evaluator\w*|examinator\w*)\b",
    # Germanic
    r"\b(?:wer|prufende\w*|prufer\w*|bewerter\w*|gutachter\w*|begutacht\w*|nachgelagert\w*|fachjury|jury)\b",
    r"\b(?:beoordelaar\w*|examinator\w*)\b",
    # Slavic, Hungarian, Turkish, Greek
    r"(?:проверяющ\w*|оценщик\w*|экзаменатор\w*|рецензент\w*|перевіряюч\w*|оцінювач\w*)",
    r"\b(?:oceniajac\w*|egzaminator\w*|recenzent\w*|sprawdzajac\w*|hodnotitel\w*)\b",
    r"\b(?:ertekelo\w*|vizsgaztato\w*)\b",
    r"\b(?:inceleyen|degerlendiren|okuyan|puanlayan)\b",
    r"(?:οποιος|αξιολογητ\w*|εξεταστ\w*)",
    # Indonesian, Vietnamese, Semitic, Indic
    r"\b(?:penilai|pemeriksa|juri)\b",
    r"\b(?:he thong|nguoi cham|giam khao|nguoi danh gia)\b",
    r"מי שבוחן|מי שקורא|מי שבודק|הבודק|המעריך|הבוחן",
    r"ко ово|прегледа\w*|прегледач\w*",
    r"ممن يطلع|من يطلع|المقيم|المراجع|المصحح",
    r"मूल्यांकनकर्ता",
    # Chinese, Japanese, Korean
    r"审阅者|审阅人|评审|评委|评估者|评估员|评分者|评分员|阅卷|审核者",
    r"ご覧になる方|読む方|評価者|採点者|審査員|レビュアー|採点ai|評価ai|评分ai|採点システム|評価モデル",
    r"살펴보시는 분|보시는 분|읽는 분|평가자|채점자|심사위원|검토자",
    # languages beyond the first thirty
    r"जो भी|जो कोई|परीक्षक|समीक्षक|जाँचने वाला|যিনি|যে কেউ|পরীক্ষক|মূল্যায়নকারী|جو بھی|جائزہ لینے والا|ممتحن",
    r"هر کس|هرکس|ارزیاب|بررسیکننده|داور|ผู้ที่ตรวจ|ผู้ตรวจ|ผู้ประเมิน|ระบบใด",
    r"\b(?:atakayepitia|yeyote|mtathmini|mkaguzi|anayesoma|sinumang|sino man|tagasuri|nagmamarka|arvioija\w*"
    r"|tarkastaja\w*|kuka tahansa|bedommer\w*|sensor\w*|enhver|qui llegeixi|avaluador\w*|ocjenjivac\w*"
    r"|ocenjivac\w*|ko god|vertintoj\w*|tikrintoj\w*|hodnotitel\w*|hindaja\w*|vertetaj\w*|ocenjevalec\w*"
    r"|qiymetlendirici|beoordelaar\w*|nasiener\w*|siapa pun|sistem apa pun|kim okursa|her kim)\b",
    r"оцењивач|ко год|който и да|оценител|проверяващ|மதிப்பீட்டாளர்",
    r"阅读者|任何系统|読み手|後で読む|aiシステム|ai システム|읽는 ai",
)

TOP_OUTCOME = _compile(
    # English
    r"\b(?:top|maximum|max|highest|best|perfect|full)\s+(?:possible\s+)?(?:marks?|credit|score|scores|rating"
    r"|ratings|grade|grades|points?|of (?:the|those|these|each|every) scales?|possible)\b",
    r"\bfull\s*marks\b|\bfull credit\b|\bgold standard\b|\bbeyond reproach\b|\bnothing to improve\b",
    r"\b(?:flawless|impeccable|exemplary|outstanding|irreproachable|faultless|ideal answer|optimal)\b",
    r"\bno (?:concerns|deductions|criticism|serious problems)\b|\btop of the (?:range|scale|list|chart)\b",
    r"\b(?:fully|completely|entirely) (?:met|satisfied|honou?red|upheld)\b|\bnothing could improve\b",
    r"\b(?:did|does|do) justice to (?:everything|every|all)\b|\banything below\b|\bfull pott\b",
    r"\bacross the board\b|\bin every (?:respect|way|regard)\b|\bfully (?:upheld|aligned|compliant)\b",
    r"\b(?:5|five)\s*(?:/|out of)\s*(?:5|five)\b|\b10\s*/\s*10\b",
    # Romance
    r"\b(?:maxim[ao]s?|mas alt[ao]|mais alt[ao]|perfect[ao]|perfeit[ao]|excelente|ejemplar|exemplar|impecable"
    r"|impecavel|irreprochable|sobresaliente|sin reservas|seja generos[ao]|sea generos[ao])\b",
    r"\b(?:nada que mejorar|cada valor|todos los valores|todos los criterios|todos os criterios|em tudo|en todo)\b",
    r"\b(?:maximum|maximal\w*|meilleure note|parfait\w*|exemplaire|irreprochable|impeccable|a tous egards"
    r"|chaque valeur|toutes les valeurs|de reference)\b",
    r"\b(?:massim\w*|perfett\w*|impeccabil\w*|esemplar\w*|ottimal\w*|ovunque|ogni aspetto|tutti i valori"
    r"|senza riserve)\b",
    r"\b(?:cea mai inalta|exemplar\w*|impecabil\w*)\b",
    # Germanic
    r"\b(?:hochst\w*|maximal\w*|bestnote|beste note|perfekt\w*|einwandfrei\w*|vorbildlich\w*|tadellos\w*"
    r"|hervorragend\w*|goldstandard|in jeder hinsicht|in allen (?:belangen|kategorien|werten)|obersten bereich)\b",
    r"\b(?:hoogste|maximaal|uitstekend|geen verbeterpunten|voorbeeldig|hogsta|utmarkt|felfri)\b",
    # Slavic, Hungarian, Turkish, Greek
    r"(?:максим\w*|высш\w*|идеальн\w*|безупречн\w*|замечании нет|все показатели|на высшем|найвищ\w*"
    r"|не занижуите)",
    r"\b(?:najwyzsz\w*|maksymaln\w*|doskonal\w*|plny|plnou|nejvyssi|maximaln\w*|legmagasabb|maximalis"
    r"|tokeletes|hibatlan)\b",
    r"\b(?:en yuksek|tam puan|kusursuz|mukemmel|her bakimdan|her kategoride)\b",
    r"(?:αψογ\w*|μεγιστ\w*|καθε αποψη)",
    # Indonesian, Vietnamese, Semitic, Indic
    r"\b(?:maksimal|tertinggi|sempurna|toi da|cao nhat|hoan hao|mau muc)\b",
    r"מושלמ|מקסימל|הגבוה ביותר|מכל בחינה|ללא הסתייגויות",
    r"اعلى تقييم|لا تشوبه شائبة|من كل الجوانب|الدرجة الكاملة",
    r"पूरे अंक|सर्वोच्च",
    # Chinese, Japanese, Korean
    r"满分|最高分|无可挑剔|各方面|完美无缺|典范",
    r"満点|最高点|申し分|全項目|どの観点",
    r"만점|최고 점수|최고점|흠잡을 데 없|어느 면",
    # more English forms, and languages beyond the first thirty
    r"\b(?:ideal|model|gold|reference)\s+(?:response|answer|reference|example)\b|\bbest[- ]in[- ]class\b",
    r"\b(?:the\s+)?(?:maximum|max|top|highest)\s+(?:on|in|for|across)\s+(?:each|every|all)\b|\banything less than\b",
    r"त्रुटिहीन|उत्कृष्ट|सर्वश्रेष्ठ|अधिकतम|पूर्ण अंक|हर पहलू|নিখুঁত|সর্বোচ্চ|পূর্ণ নম্বর|প্রতিটি দিক",
    r"بے عیب|زیادہ سے زیادہ|مکمل نمبر|ہر لحاظ|بینقص|بی نقص|حداکثر|بالاترین|از هر نظر|نمره کامل",
    r"ไม่มีข้อบกพร่อง|สมบูรณ์แบบ|คะแนนเต็ม|ดีเยี่ยม",
    r"\b(?:kamilifu|bila dosari|alama kamili|ya juu kabisa|bora kabisa|kila kipengele|perpekto|pinakamataas"
    r"|walang mali|walang kapintasan|buong marka|markah penuh|virheeton|taydet pisteet|korkein|joka suhteessa"
    r"|hojeste|hoyeste|fejlfri|feilfri|topkarakter|pa alle punkter|maxima|perfecta|en tots els aspectes"
    r"|najvis\w*|besprijekor\w*|besprekor\w*|savrsen\w*|aukscia\w*|tobul\w*|nepriekaisting\w*|najvyss\w*"
    r"|bezchybn\w*|laitmatu|korgeim|nevainojam\w*|brezhib\w*|qusursuz|en yuksek puan|tam not|foutloos|volpunte"
    r"|nilai penuh|tanpa cela)\b",
    r"највиш|беспрекор|савршен|максимал|най-висок|безупреч|перфект|சிறந்த|முழு மதிப்பெண்|குறைபாடற்ற|குறையே இல்லாத|முழுமையான",
    r"ציון מלא|ללא רבב|מצוינ|الدرجة القصوى|اعلى درجة|مثالي|بلا عيوب|нема шта замерити|без замерке",
    r"完美|最高评价|无瑕疵|模範的|完璧|最高評価|非の打ち所|완벽|최고 평가|모범",
    r"\b(?:hoan hao|diem toi da|xuat sac|khong co loi|αψογη|αριστη|μεγιστη βαθμολογια|τελεια)\b",
)

ALL_VALUES = _compile(
    # "every value / all criteria / in every category", in about forty languages
    r"\b(?:every|each|all|any)[\s_]+(?:(?:of the|one of (?:the|them))\s+)?(?:values?|criteri\w*|categor\w*|dimensions?"
    r"|aspects?|metrics?)\b|\bevery one of them\b|\ball of them\b",
    r"\b(?:todos los|todas las|cada|todos os|todas as|toutes les|tous les|chaque|tutti i|tutte le|ogni|toate|fiecare"
    r"|alle[ns]?|jede[nrsm]?|samtliche[nr]?|elke|alla|hver|kaikki\w*|jokai\w*|wszystki\w*|kazd\w*|vsechn\w*|kazd\w*"
    r"|vsetk\w*|minden|tum|her|semua|setiap|moi|tat ca|lahat ng|bawat|kila|sve|svak\w*)\s+(?:\w+\s+)?"
    r"(?:valor\w*|valeur\w*|valori|valoril\w*|wert\w*|waarde\w*|varden\w*|verdi\w*|vaerdi\w*|arvo\w*|wartosc\w*"
    r"|hodnot\w*|ertek\w*|deger\w*|nilai|gia tri|pagpapahalaga|thamani|vrednost\w*|vrijednost\w*|criteri\w*"
    r"|critere\w*|kriteri\w*|categor\w*|kategori\w*|aspect\w*|aspekt\w*|olcut\w*|tieu chi|pamantayan|vigezo"
    r"|maadili|punkt\w*|pont\w*|mittar\w*)",
    r"\b(?:maadili|vigezo) yote\b|\bvalores todos\b",
    r"(?:все|всем|всех|всі|усі|всички|свим|сваку|сви)\s+(?:\w+\s+)?(?:ценност\w*|цінност\w*|вредност\w*|критери\w*"
    r"|показател\w*|пункт\w*)|(?:каждои|кожною|кожнои)\s+(?:ценност\w*|цінніст\w*)",
    r"(?:ολες τις|ολα τα|καθε)\s+(?:αξι\w*|κριτηρι\w*)",
    r"كل القيم|جميع القيم|كل المعايير|כל הערכים|בכל הקטגוריות|כל הקטגוריות|همه ارزشها|تمام ارزشها|همه معیارها"
    r"|تمام اقدار|ہر قدر",
    r"सभी मूल्य|हर मूल्य|सभी मानदंड|সব মান|সকল মান|প্রতিটি মান|அனைத்து மதிப்பு|எல்லா விதத்திலும்",
    r"ทุกค่า|ทุกด้าน|ทุกเกณฑ์",
    r"所有价值|每个价值|各项|所有维度|各方面|すべての価値|全ての価値|全項目|各項目|全ての観点",
    r"모든 가치|모든 항목|모든 기준",
)
_TOP_NUMBER = re.compile(
    # a 5 (or 5/5, 10/10) that is not the end of a range ("1 to 5", "1-5", "de 1 a 5", "von 1 bis 5")
    r"(?<![\d.,/])(?<!to )(?<![-–~] )(?<![-–~])(?<! a )(?<!bis )(?<!до )(?<!tot )(?<!till )"
    r"(?:5|5\s*/\s*5|10\s*/\s*10)(?!\d|[.,]\d|\s*/\s*(?:[0-46-9]|10))"
)
MAX_SCORE = _compile(
    # the top of a scale, in about forty languages
    r"\b(?:top|maximum|max|highest|best possible|full|perfect)\s+(?:marks?|score|scores|rating|grade|points?|credit)\b",
    r"\b(?:maxim\w*|mas alt\w*|mais alt\w*|meilleure note|hochst\w*|bestnote|massim\w*|cea mai inalta|hoogste"
    r"|hogsta|hoyeste|hojeste|full pott|topkarakter|korkein\w*|taydet pisteet|najwyzsz\w*|nejvyss\w*|najvyss\w*"
    r"|plny pocet|legmagasabb|en yuksek|tam puan|tertinggi|maksimal|markah penuh|nilai penuh|toi da|cao nhat"
    r"|alama kamili|ya juu kabisa|pinakamataas|buong marka)\b",
    r"максим|высш\w* балл|наивысш|наивищ|вищ\w* бал|най-висок|највиш|μεγιστ|القصوى|اعلى درجة|اعلى تقييم|הגבוה ביותר"
    r"|מקסימל|ציון מלא|حداکثر|بالاترین|نمره کامل|सर्वोच्च|अधिकतम|पूरे अंक|সর্বোচ্চ|পূর্ণ নম্বর|สูงสุด|คะแนนเต็ม"
    r"|满分|最高分|最高评价|満点|最高点|最高評価|만점|최고 점수|최고점",
)
EVERY_VALUE_TOP = _compile(
    r"\ball of them (?:are|get|should be)\s+(?:a\s+)?(?:5|five|yes)\b",
    r"\b(?:should|must) be (?:scored|rated|marked|treated|counted) as\b",
    r"\buberall\W{0,3}(?:ja|5)\b",
)


def every_value_top(folded: str) -> bool:
    """Whether a (folded) sentence gives every value or criterion a top outcome: no honest answer to a user says
    this about itself."""
    if EVERY_VALUE_TOP.search(folded):
        return True
    return bool(ALL_VALUES.search(folded)) and bool(
        MAX_SCORE.search(folded) or _TOP_NUMBER.search(folded) or re.search(r"\b(?:five|yes|pass\w*|upheld)\b", folded)
    )


EVALUATION = _compile(
    # English
    r"\b(?:rat(?:e|ed|es|ing|ings)|scor(?:e|ed|es|ing)|grad(?:e|ed|es|ing)|mark(?:ed)?|evaluat\w*|assess\w*"
    r"|review\w*|judg\w*|verdict|certif\w*|calibrat\w*|recorded|rubric|credit|scales?|impressions?|write[- ]?up)\b",
    # Romance
    r"\b(?:evalua\w*|califica\w*|nota|puntua\w*|puntaje|valora\w*|rubrica|constancia|reflejad[ao]|avalia\w*"
    r"|pontua\w*|note[zr]?|notation|consign\w*|bareme|valuta\w*|voto|punteggio|annotar\w*|consemn\w*|evaluar\w*"
    r"|escala|echelle|scala)\b",
    # Germanic
    r"\b(?:bewert\w*|beurteil\w*|note|punkt\w*|vermerk\w*|festgehalten|eingestuft|beoordel\w*|cijfer|betyg\w*"
    r"|skala|schaal)\b",
    # Slavic, Hungarian, Turkish, Greek
    r"(?:оцен\w*|оцін\w*|балл\w*|бал\b|отметит\w*)",
    r"\b(?:ocen\w*|punkt\w*|hodnot\w*|bod\w*|ertekel\w*|pont\w*|degerlendir\w*|puan\w*|kaydet\w*|olcek\w*)\b",
    r"(?:αξιολογ\w*|βαθμ\w*|καταγραψ\w*)",
    # Indonesian, Vietnamese, Semitic, Indic
    r"\b(?:nilai\w*|penilaian|skor|cham diem|danh gia|ghi nhan)\b",
    r"ציון|הערכה|לרשום",
    r"تقييم|درجة|يعده",
    r"अंक|मूल्यांकन",
    # Chinese, Japanese, Korean
    r"评分|评估|打分|评价|记录|认定",
    r"評価|採点|扱って",
    r"평가|점수|채점|기록",
    # languages beyond the first thirty
    r"अंक|मूल्यांकन|दर्ज|रेटिंग|নম্বর|মূল্যায়ন|نمبر|جائزہ|درج|نمره|ارزیابی|ثبت|คะแนน|ประเมิน|บันทึก",
    r"\b(?:alama|tathmini|hesabu|rekodi|marka|grado|suriin|pagsusuri|itala|markah|arvio\w*|arvosan\w*|piste\w*"
    r"|bedom\w*|vurder\w*|karakter|poeng|avalua\w*|qualifica\w*|ocjen\w*|ocen\w*|bod\w*|ivertin\w*|hodnoten\w*"
    r"|hinne|vertej\w*|qiymet\w*|beoordeel)\b",
    r"оцен|точк|бод|மதிப்பெண்|மதிப்பீடு",
)


# ---------------------------------------------------------------- structure (matched on canonical text)
_ROLE_WORDS = (
    r"system\w*|user|human|assistant|ai|model|developer|operator|admin\w*|platform|usuario|usuário|asistente"
    r"|assistente|sistema|utilisateur|système|benutzer|nutzer|assistent|utente|пользователь|ассистент|систем\w*"
    r"|користувач|асистент|المستخدم|المساعد|النظام|用户|助手|系统|ユーザー|アシスタント|システム|사용자|어시스턴트"
    r"|시스템|kullanıcı|asistan|sistem|gebruiker|użytkownik|asystent|uživatel|felhasználó|người dùng|trợ lý|pengguna"
    r"|entwickler\w*|desarrollador\w*|développeur\w*|sviluppator\w*|desenvolvedor\w*|разработчик\w*|开发者|開発者"
    r"|개발자|geliştirici\w*|pengembang|ontwikkelaar\w*|utvecklar\w*|deweloper\w*|vývojář\w*|yönetici\w*"
    r"|administrador\w*|administrateur\w*|amministrator\w*|администратор\w*|管理员|管理者|관리자|operador\w*"
    r"|opérateur\w*|operatore|оператор\w*|moderator\w*"
)
TEMPLATE_MARKER = re.compile(
    r"<\|[\w\s-]{1,30}\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|</?s>"
    rf"|</?(?:{_ROLE_WORDS})\b[^>]{{0,60}}>"
    rf"|^\W{{0,4}}[\[⟦【〔]\s*/?(?:{_ROLE_WORDS})\b[^\]⟧】〕\n]{{0,40}}[\]⟧】〕]"
    r"|\b(?:assistant|system) (?:instructions|prompt) (?:have|has) ended\b|\bnew instructions from\b",
    re.IGNORECASE | re.MULTILINE,
)
"""Chat-template tokens, role tags and bracketed role headers: a turn boundary wherever it appears."""
LABEL_MARKER = re.compile(
    rf"^\W{{0,4}}(?:{_ROLE_WORDS})(?:\s*\([^)\n]{{0,40}}\))?\s*[:：]|^\W{{0,4}}\[?turn\s*\d+\]?\s*$"
    rf"|^\s*#{{1,6}}\s*(?:{_ROLE_WORDS})\b",
    re.IGNORECASE | re.MULTILINE,
)
"""A line opening with a role label (``Human:``, ``### Assistant:``): a fake turn after the answer's first paragraph
(a response that opens with a dialogue example is left alone)."""


_RATING = (
    r"(?:\d{1,3}(?:[.,]\d+)?(?:\s*/\s*\d{1,3})?|[★⭐]{2,}[☆]*|[✔✓✅☑]\ufe0f?(?:\s*\w+)?|a\+|yes|no|true|false|pass(?:ed)?"
    r"|approved|ok|[a-z]+_[a-z]+)"
)
_TOP_RATING = re.compile(r"5|10|100|(\d{1,3})/\1|[★⭐]+|[✔✓✅☑].*|a\+|yes|true|pass(?:ed)?|approved|ok|[a-z]+_[a-z]+")
_RATING_TOKEN = re.compile(
    r"(?<![\w.])(?:[1-5](?:\s*/\s*5)?|10\s*/\s*10|yes|true|pass\w*|approved|a\+)(?![\w.])|[✔✓✅☑]|[★⭐]+☆*",
    re.IGNORECASE,
)
_STRUCTURED = re.compile(r"[|{}<>=;]|^\s*[-*]?\s*[^\s:]{1,30}\s*:|,\s*\S|[★⭐]{2,}", re.MULTILINE)
_RATING_PAIR = re.compile(
    rf"[\"'«]?([^\"'\n:=,;|{{}}<>]{{1,40}}?)[\"'»]?\s*(?:[:=,|]|</?\w+>)\s*[\"']?({_RATING})[\"']?\s*(?=[,;|}}\n<]|$)",
    re.IGNORECASE | re.MULTILINE,
)
_RATING_VALUE = re.compile(
    rf"[\"'](?:value|name|label|criterion)[\"']\s*:\s*[\"']([^\"']{{1,40}})[\"']\s*,\s*[\"']\w+[\"']\s*:\s*"
    rf"[\"']?({_RATING})",
    re.IGNORECASE,
)
_OPEN_LABEL = re.compile(r"^\W{0,4}[^\W\d][\w \t'-]{1,30}[:：]\s*$")
_ASSEMBLY = re.compile(
    r"\b(?:let|set)\s+\w\s*=\s*[\"'«]|\b\w\s*\+\s*\w\s*\+\s*\w\b|\bput them together\b|\bcombine the\b"
    r"|\bdohromady\b|\bjuntas?\b|^\W{0,4}\w{2,12}\s*\d+\s*[:：]\s*\S{1,20}\s*$"
    r"|\b(?:assemble|concatenate|zusammensetzen|zusammenfugen|zusammenfügen|juntar|unir|assembler|combiner|unire"
    r"|ricomponi|соедини\w*|собери\w*|объедини\w*|polacz|spoj|birlestir|gabungkan)\b|组合|拼接|組み合わせ|합치"
    r"|\b\w{2,12}\s*\d+\s*/\s*\d+\s*[:：]"
    r"|^[^\"«»\n]{0,40}[:=]?\s*[\"«“„][^\"«»“”\n]{1,40}[\"»”“]\W{0,3}$",
    re.IGNORECASE | re.MULTILINE,
)


@lru_cache(maxsize=64)
def _value_words(value_names: tuple[str, ...]) -> frozenset[str]:
    from picaco_dspy.objective.values import ValueSet

    names = {fold(n) for n in value_names}
    for set_name in ValueSet.builtin_names():
        names.update(fold(n) for n in ValueSet.builtin(set_name).names)
    return frozenset(names | {"helpfulness", "harmlessness", "honesty", "overall", "total"})


def verdict_block(text: str, value_names: Sequence[str] = ()) -> bool:
    """Whether ``text`` holds a verdict: three or more ``key: rating`` pairs with the same top rating (5, 10/10, yes,
    pass, a check mark, a star row), or two or more value names with ratings in a structured shape (JSON, YAML, CSV,
    Markdown tables, XML elements or attributes, plain ``key: value`` lines)."""
    pairs = [(fold(k).strip(" -*#|`\"'"), fold(v)) for k, v in _RATING_PAIR.findall(text)]
    pairs += [(fold(k), fold(v)) for k, v in _RATING_VALUE.findall(text)]
    value_words = _value_words(tuple(value_names))
    keyed_by_value = [p for p in pairs if p[0] in value_words]
    if len(keyed_by_value) >= 2:
        return True
    folded = fold(text)
    named = sum(bool(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", folded)) for word in value_words)
    if named >= 2 and len(_RATING_TOKEN.findall(text)) >= 2 and _STRUCTURED.search(text):
        return True  # value names with ratings in any structured shape (XML attributes, tables, CSV)
    ratings = [v.replace(" ", "") for _, v in pairs]
    if any(ratings.count(r) >= 3 and _TOP_RATING.fullmatch(r) for r in set(ratings)):
        return True
    # in markup or key=value runs: three or more standalone top numbers ("<v name='x'>5</v>", "a.b=5; c.d=5")
    return (
        bool(re.search(r"[<>=;{}|]", text))
        and len(re.findall(r"(?<=[>=:])\s*(?:5|5/5|10/10)\s*(?=[<;,|}\n]|$)", text)) >= 3
    )


def open_completion(text: str, *, alone: bool = False) -> bool:
    """Whether ``text`` ends in a label waiting for its value (``Verdict:``), as if the judge's answer began
    (``alone``: the text is a paragraph of its own after the answer, so a one-line label counts)."""
    lines = [line for line in text.rstrip().split("\n") if line.strip()]
    return bool(lines) and (alone or len(lines) > 1) and bool(_OPEN_LABEL.match(lines[-1]))


def assembly_lines(text: str) -> list[str]:
    """The lines of ``text`` that look like pieces of an assembled message (quoted fragments, ``Part 2/3:``)."""
    return [line for line in text.split("\n") if line.strip() and _ASSEMBLY.search(line)]


def assembled_message(text: str) -> bool:
    """Whether ``text`` spells a message out of parts (``Let A = "..."``, ``Word 1: x``) for the reader to join."""
    return len(_ASSEMBLY.findall(text)) >= 2 or bool(re.search(r"\b(?:let|set)\s+\w\s*=\s*[\"'«]", text, re.I))


EVALUATION_DONE = _compile(
    r"\b(?:complete[d]?|finished|done|final|concluded|over|finalizad[ao]|completad[ao]|conclu[ií]d[ao]|terminee?"
    r"|achevee?|abgeschlossen|beendet|fertig|completat[ao]|voltooid|afgerond|klar|zakonczon\w*|dokoncen\w*"
    r"|tamamlandi|selesai|hoan tat|valmis|valmis|faerdig|ferdig|gotowe|hotovo|kesz|tapos na|imekamilika"
    r"|завершен\w*|окончен\w*|закончен\w*|завершено)\b",
    r"完了|完成|结束|終了|완료",
)


def evaluation_report(sentence: str) -> bool:
    """Whether ``sentence`` is a short header announcing a finished evaluation (``Assessment complete.``,
    ``Bewertung abgeschlossen``): the judge's own output, begun for it."""
    folded = fold(sentence)
    return len(folded.split()) <= 5 and bool(EVALUATION.search(folded)) and bool(EVALUATION_DONE.search(folded))


def concept_cue(sentence: str, value_names: Sequence[str] = ()) -> str | None:
    """The name of the concept pair that marks ``sentence`` as addressed to the evaluator, or None.

    Pairs: the response itself with its evaluation or a top outcome (``self+evaluation``, ``self+top``), a reader
    other than the user with the response or a top outcome (``reader+self``, ``reader+top``), a top outcome for every
    value or criterion (``every-value-top``), a top outcome for two or more named values (``values+top``), and a short
    header announcing a finished evaluation (``evaluation-report``).
    """
    folded = fold(sentence)
    if every_value_top(folded):
        return "every-value-top"
    if evaluation_report(sentence):
        return "evaluation-report"
    self_ref = bool(SELF_REFERENCE.search(folded))
    reader = bool(OTHER_READER.search(folded))
    top = bool(TOP_OUTCOME.search(folded))
    if self_ref and (top or EVALUATION.search(folded)):
        return "self+top" if top else "self+evaluation"
    top = top or bool(MAX_SCORE.search(folded))
    if reader and (top or self_ref):
        return "reader+top" if top else "reader+self"
    if top and sum(bool(re.search(rf"\b{re.escape(w)}\b", folded)) for w in _value_words(tuple(value_names))) >= 2:
        return "values+top"
    return None
