"""Words around a person's name, per language: greetings, sign-offs, self-introductions, titles, labels, roles.

Each table maps a language to phrases written by hand for this project (ordinary usage of each language,
no list copied from elsewhere). `names.py` turns them into patterns:
- BEFORE: a name follows the phrase ("hi this is luis", "Bei Fragen hilft Ihnen Justus");
  STRONG ones also accept a lower-case given name from the lists (chat is written in lower case);
- AFTER: a name comes before the phrase ("Brandi here", "Manon à votre écoute", "Deepak ji");
- TITLES: a form of address ("Frau Nowak", "Sra. Navarro", "Smt. Iyer");
- LABELS: a form field ("Kontoinhaber:", "titulaire du compte :", "Name:");
- HOLDERS: who an account, card, booking, passport or badge belongs to, written in running text without a colon
  ("account owner Harper Lindqvist", "my passport says William Hartley", "a nombre de Ana Ruiz");
- REPLIES: a chat reply word; a lower-case name after one that ends the turn is a name ("yes savannah brooks");
- SIGN_OFFS: a closing line; the next line, when it looks like a name, is one ("Atentamente,\\nMorena");
- ROLES: a noun for a person ("our technician Ramesh", "mi abuela Dolores");
- KIN: family and friends after a possessive; any capitalised word after them is a name ("my cousin Tejaswini");
- OWN_NAME: a sentence that says whose name it is; the words after it are a name even when no list has them
  ("name is artemii bondar", "myself raghav", "je m'appelle anouk").
"""

from __future__ import annotations

GREETINGS = {
    "en": "hi|hello|hey|hiya|dear|morning|good morning|good afternoon|good evening|thanks|thank you|thx|ty|cheers|"
    "thanks again|many thanks|thank you so much|thanks so much|thanks a lot|thanks a ton|thank you very much|"
    "no problem|bye|see you|sorry|"
    "anything else,|got it,|ok thanks|namaste",
    "de": "hallo|hi|liebe|lieber|moin|servus|guten morgen|guten tag|guten abend|danke|danke schön|vielen dank|tschüss|"
    "danke vielmals|vielen herzlichen dank|danke nochmal|"
    "grüß dich|grüezi",
    "fr": "bonjour|bonsoir|salut|coucou|cher|chère|merci|merci beaucoup|merci bien|merci infiniment|merci mille fois|"
    "mille mercis|au revoir|bonne journée",
    "es": "hola|buenas|buenas tardes|buenas noches|buenos días|buenos dias|estimado|estimada|querido|querida|"
    "gracias|muchas gracias|mil gracias|muchísimas gracias|gracias de nuevo|vale gracias|adiós|hasta luego",
}
INTRODUCTIONS = {
    "en": "this is|it's|its|it is|i'm|im|i am|my name is|my name's|name's|call me|am i speaking with|"
    "is this|speaking with|ask for|tell|told|message|email|call|contact|ask|under my wife,|under my husband,|are you|you're through to .{0,30}?, i'm|"
    "you're through to|you are through to|you've reached|you have reached|you're speaking to|you are speaking to|"
    "you're speaking with|you are speaking with|you're chatting with|you are chatting with",
    "de": "hier ist|ich bin|ich bin der|ich bin die|mein name ist|ich heiße|ich heisse|hilft ihnen|wenden sie sich an|"
    "hier spricht|es spricht|am apparat ist|fragen sie nach|sprechen sie mit|bin ich mit|spreche ich mit|sie sprechen mit|sie sind verbunden mit|sie sind mit",
    "fr": "c'est|c’est|c'est encore|ici|je suis|je m'appelle|je m’appelle|moi c'est|vous êtes bien|êtes-vous|"
    "je soussigné|je soussignée|demandez|dites à|prévenir|merci de prévenir|au nom de mon mari,|au nom de ma femme,|"
    "vous êtes en ligne avec|vous parlez à|vous parlez avec",
    "es": "soy|me llamo|mi nombre es|habla|le atiende|te atiende|eres|es usted|pregunta por|preguntad por|dile a|"
    "decidle a|avisad a|avisad por favor a|yo,|a nombre de mi marido,|a nombre de mi mujer,|está hablando con|habla con|"
    "le escribe|te escribe",
}
# after these a lower-case given name is a name too ("hi this is luis", "ok merci nathalie")
STRONG = (
    "hi|hello|hey|hiya|thanks|thank you|thx|cheers|this is|it's|its|i'm|im|my name is|call me|"
    "hallo|hi|danke|hier ist|ich bin|mein name ist|merci|bonjour|salut|c'est|c’est|je suis|je m'appelle|"
    "hola|gracias|soy|me llamo|buenas|vale gracias|muchas gracias|merci beaucoup|namaste|moi c'est|"
    "thanks a lot|thanks a ton|thanks so much|thank you so much|thank you very much|hier spricht|merci infiniment|"
    "thanks again|gracias de nuevo|danke nochmal|merci encore|"
    "merci mille fois|mille mercis|danke vielmals|muchísimas gracias|mil gracias"
)
HOLDERS = {
    "en": "account owner|account holder|account holder name|account name|cardholder|card holder|cardholder name|"
    "name on the card|name on my card|name on the account|name on the booking|name on the ticket|name on the passport|"
    "name on my passport|passport says|my passport says|passport reads|passport name|badge name|name badge|badge says|"
    "booking name|booked under|booking is under|reservation under|reservation is under|order is under|account is under|"
    "registered under|under the name|under the name of|in the name of|policy holder|policyholder|registered to|"
    "registered owner|addressed to|made out to|payable to|lead passenger|passenger name|guest name|ticket holder|"
    "the account holder is|the cardholder is|licence holder|license holder|under my name|in my name|name on it is",
    "de": "kontoinhaber|kontoinhaberin|karteninhaber|karteninhaberin|inhaber|inhaberin|auf den namen|auf den namen von|"
    "lautet auf|im namen von|gebucht auf|reserviert auf|name im pass|laut pass|im pass steht|im reisepass steht|"
    "name auf der karte|namensschild|ausgestellt auf|zugelassen auf|versicherungsnehmer|versicherungsnehmerin|"
    "angemeldet auf|registriert auf|läuft auf|auf meinen namen|mieter|mieterin|zu händen|z\\. hd\\.|z\\.hd\\.",
    "fr": "titulaire|titulaire du compte|titulaire de la carte|au nom de|réservé au nom de|réservation au nom de|"
    "porteur de la carte|nom sur la carte|nom sur le passeport|sur mon passeport|mon passeport indique|badge au nom de|"
    "nom du badge|enregistré au nom de|à mon nom|inscrit au nom de|assuré|assurée|locataire|à l'attention de|à l’attention de",
    "es": "titular|titular de la cuenta|titular de la tarjeta|a nombre de|reservado a nombre de|reserva a nombre de|"
    "está a nombre de|a mi nombre|nombre en la tarjeta|nombre en el pasaporte|en mi pasaporte pone|mi pasaporte pone|"
    "mi pasaporte dice|en el pasaporte pone|acreditación a nombre de|registrado a nombre de|tomador|tomadora|"
    "inquilino|inquilina|a la atención de|a/a",
}
# sentences that say whose name it is; the words after them are a name even when no list has them
OWN_NAME = (
    "my name is|my name's|my full name is|i am called|i'm called|his name is|her name is|myself|it's me|"
    "ich bin's|ich bin es|ich bin's wieder|c'est moi|c'est encore moi|c’est encore moi|soy yo|soy yo otra vez|it's me again|"
    "ich heiße|ich heisse|mein name ist|mein name lautet|je m'appelle|je m’appelle|mon nom est|mon nom c'est|"
    "me llamo|mi nombre es|mi nombre completo es"
)
REPLIES = (
    "yes|yeah|yep|yup|ok|okay|sure|correct|that's right|right|exactly|"
    "ja|jo|genau|richtig|korrekt|oui|ouais|exact|exactement|d'accord|c'est ça|"
    "sí|si|vale|claro|correcto|exacto|eso es"
)
PERSONAS = "you are|you're|du bist|sie sind|tu es|vous êtes|eres|usted es"
AFTER = (
    "here|hier|speaking|this side|from our team|from your team|from the team|from the .{1,30}? team|from [A-Z][\\w&-]*|"
    "à votre écoute|de chez|al habla|le atiende|ji|says|said|told me|will call|may call|"
    "rang|called|phoned|rang back|called back|emailed|wrote|replied|confirmed|promised|explained|mentioned|"
    "hat angerufen|rief an|sagte|meinte|schrieb|hat bestätigt|hat versprochen|"
    "a appelé|m'a dit|m’a dit|a dit|a écrit|a confirmé|a promis|"
    "llamó|me dijo|dijo|escribió|confirmó|ha llamado|prometió|"
    "a l'appareil|à l'appareil|am apparat|del equipo|de l'équipe|aus dem team|vom team"
)
TITLES = (
    "Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Herrn|Frau|Hr\\.|Fr\\.|M\\.|Mme|Mlle|Madame|Monsieur|"
    "Mademoiselle|Maître|Sr|Sra|Srta|Señor|Señora|Señorita|señor|señora|señorita|Don|Doña|D\\.|Dña|"
    "Inspector|Sub-Inspector|Constable|Sergeant|Sgt|Captain|Capt|Major|Colonel|Col|Lt|Lieutenant|Detective|Det|Rev|Revd|"
    "Pastor|Kommissar|Kommissarin|Hauptkommissar|Hauptkommissarin|Inspecteur|Commissaire|Capitaine|Sargento|Teniente|"
    "Shri|Shrimati|Smt|Sri|Kumari|Km|Mohd|Md|Familie|Family|Famille|Familia|familia|famille|Mister|Missus|herr|frau|madame|monsieur|mr|mrs|ms"
)
LABELS = (
    "name|full name|account holder|account name|account holder name|holder|contact person|contact|passenger|"
    "customer name|beneficiary|payee|nominee|signed|signature|from|attn|c/o|"
    "kontoinhaber|kontoinhaberin|vorname|nachname|unterschrift|ansprechpartner|ansprechpartnerin|empfänger|"
    "titulaire|titulaire du compte|nom|prénom|nom du titulaire|bénéficiaire|signé|"
    "titular|titular de la cuenta|nombre|nombre y apellidos|apellidos|fdo\\.|firmado|contacto|beneficiario|destinatario"
)
SIGN_OFFS = (
    "best|best wishes|best regards|kind regards|warm regards|regards|many thanks|thanks|thank you|thanking you|cheers|"
    "sincerely|yours sincerely|yours faithfully|yours truly|yours|love|take care|all the best|"
    "ta|ta very much|hth|hope this helps|hope that helps|thanks & regards|thanks and regards|regards & thanks|warmly|"
    "with thanks|speak soon|talk soon|thanks in advance|many thanks in advance|br|"
    "schöne grüße|liebe grüsse|bis bald|danke und gruß|dankeschön|grüßle|ciao|"
    "bises|bisous|merci encore|bonne soirée|à plus|a\\+|salutations|cdlt|bien amicalement|"
    "saludos cordiales|un cordial saludo|abrazos|gracias de antemano|hasta pronto|"
    "viele grüße|viele grüsse|beste grüße|liebe grüße|herzliche grüße|freundliche grüße|mit freundlichen grüßen|"
    "mit freundlichen grüssen|gruß|grüße|lg|vg|mfg|hochachtungsvoll|danke|vielen dank|"
    "cordialement|bien cordialement|bien à vous|amicalement|bonne journée|merci|merci d'avance|à bientôt|"
    "sincères salutations|votre conseiller|votre conseillère|"
    "atentamente|saludos|un saludo|un abrazo|muchas gracias|gracias|cordialmente|tu gestor|tu gestora|"
    "su gestor|su gestora|besos|un beso"
)
ROLES = (
    "technician|delivery partner|delivery boy|driver|courier|neighbour|neighbor|wife|husband|mum|mom|dad|son|daughter|"
    "brother|sister|colleague|manager|agent|advisor|adviser|engineer|friend|boss|"
    "techniker|nachbar|nachbarin|kollege|kollegin|frau|mann|tochter|sohn|mutter|vater|oma|opa|fahrer|"
    "technicien|livreur|voisin|voisine|collègue|mari|femme|fille|fils|conseiller|conseillère|"
    "técnico|técnica|repartidor|repartidora|vecino|vecina|compañero|compañera|marido|mujer|hija|hijo|abuela|abuelo|"
    "madre|padre|gestor|gestora|asesor|asesora|customer|client|caller|patient|guest|"
    "complainant|applicant|claimant|petitioner|tenant|landlord|buyer|seller|subscriber|tech|installer|cashier|nurse|"
    "receptionist|kläger|klägerin|antragsteller|antragstellerin|mieter|mieterin|vermieter|vermieterin|käufer|käuferin|"
    "monteur|installateur|kassierer|kassiererin|plaignant|plaignante|demandeur|demandeuse|locataire|propriétaire|"
    "acheteur|acheteuse|caissier|caissière|demandante|reclamante|solicitante|inquilino|inquilina|casero|casera|"
    "comprador|compradora|instalador|instaladora|cajero|cajera"
)
# kin and friends: after "my cousin", "mein Freund", "ma voisine", "mi cuñado" any capitalised word is a name, listed or not
KIN = (
    "cousin|aunt|uncle|niece|nephew|grandma|grandpa|granny|grandmother|grandfather|flatmate|roommate|housemate|partner|"
    "fiancé|fiancée|girlfriend|boyfriend|stepson|stepdaughter|son-in-law|daughter-in-law|mother-in-law|father-in-law|"
    "brother-in-law|sister-in-law|wife|husband|son|daughter|"
    "brother|sister|mum|mom|dad|friend|neighbour|neighbor|colleague|"
    "cousine|tante|onkel|nichte|neffe|freund|freundin|mitbewohner|mitbewohnerin|partnerin|verlobte|verlobter|schwager|"
    "schwägerin|schwiegermutter|schwiegervater|bruder|schwester|enkel|enkelin|tochter|sohn|mutter|vater|nachbar|nachbarin|"
    "oncle|nièce|neveu|ami|amie|copain|copine|colocataire|compagnon|compagne|beau-frère|belle-sœur|belle-mère|"
    "frère|sœur|petit-fils|petite-fille|voisin|voisine|mari|fille|fils|"
    "primo|prima|tía|tío|sobrino|sobrina|amigo|amiga|novio|novia|pareja|cuñado|cuñada|suegra|suegro|hermano|hermana|"
    "nieto|nieta|vecino|vecina|marido|hija|hijo|abuela|abuelo"
)
# words after which a capitalised word names a thing, not a person ("Luna smart bulb", "Victoria station");
# lower-case: compared with the word lower-cased ("Victoria Station" too)
THING_NOUNS = frozenset(
    """station airport street road chart graph table plot store shop branch outlet clinic city council county home heights line avenue lane square park bridge hospital hotel mall centre center market club band orchestra choir ensemble quartet trio album
    traders enterprises industries motors stores associates solutions textiles jewellers jewelers electronics agencies
    smart bulb speaker app phone tv watch plus pro max mini ultra edition series model
    bahnhof flughafen straße strasse platz kopfhörer lautsprecher
    gare aéroport rue avenue place
    estación aeropuerto calle plaza avenida""".split()
)
# capitalised words that are no name's part in German, French, Spanish text (English ones: names.NOT_NAMES)
FOREIGN_STOP = frozenset(
    """Der Die Das Den Dem Des Ein Eine Einen Einem Und Oder Aber Ich Du Er Sie Es Wir Ihr Ihnen Ihre Ihrem Ihren
    Ihres Mein Meine Dein Deine Sein Seine Unser Unsere Bitte Danke Hallo Herr Frau Herren Damen Liebe Lieber Sehr
    Geehrte Geehrter Grüße Gruß Viele Beste Team Kundenservice Kundendialog Kunde Kundin Agent Mitarbeiter Montag
    Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag Januar Februar März Juni Juli Oktober Dezember Mai
    Le La Les Un Une Des Du De Et Ou Mais Je Tu Il Elle Nous Vous Ils Elles Mon Ma Mes Ton Ta Votre Vos Notre Nos
    Bonjour Bonsoir Merci Madame Monsieur Mademoiselle Cher Chère Cordialement Équipe Service Client Cliente
    Conseiller Conseillère Lundi Mardi Mercredi Jeudi Vendredi Samedi Dimanche Janvier Février Mars Avril Juin
    Juillet Août Septembre Octobre Novembre Décembre Objet Société
    El Los Las Una Unos Unas Y O Pero Yo Tú Él Ella Nosotros Usted Ustedes Mi Tu Su Nuestro Hola Gracias Señor
    Señora Estimado Estimada Atentamente Saludos Equipo Agente Usuario Cliente Lunes Martes Miércoles Jueves
    Viernes Sábado Domingo Enero Febrero Marzo Abril Mayo Junio Julio Agosto Septiembre Octubre Noviembre
    Diciembre Buenas Buenos Tardes Días Noches Muy Señores Asesoría Por Favor Tschüss Tschau Ciao Adiós Adieu
    Servus Moin Salut Coucou Vale Gracias Perfecto Genau Bien Same""".split()
)
# capitalised words before a name that make it a place or a product ("Sankt Augustin", "Hotel María Cristina")
PLACE_PREFIXES = frozenset(
    """Sankt St San Santa Santo Saint Sainte Ciudad Villa Puerto Bad Hotel Hôtel Estación Gare Eau Leche Café
    Restaurant Bar Fort Port Mount Lake Cape Glen Camp Hospital Hôpital Klinik Clínica Colegio Avenida Calle Rue
    Storm Hurricane Typhoon Cyclone Sturm Sturmtief Orkan Orkantief Hurrikan Taifun Tempête Ouragan Borrasca Huracán Tormenta""".split()
)
# prepositions of place: a listed name right after one is a place ("in Camden", "Fait à Paris", "a Santiago")
PLACE_PREPOSITIONS = frozenset("in near at à en nach aus de a zu bei au".split()
)
PARTICLES = frozenset("de del de la de los van von der den da di du dos das le la ten ter zu bin ibn al el y e i".split())
# last words of a signature line that make it a team or company, not a person ("Team Apollo", "L'équipe Sonora")
TEAM_WORDS = frozenset(
    """team support service services desk helpdesk customer care office bank group ltd inc gmbh ag sa sl sas online app
    department dept billing sales accounts operations reception administration
    abteilung verwaltung buchhaltung vertrieb empfang kundendienst
    équipe service comptabilité direction accueil facturation
    equipo kundendialog kundenservice servicio atención departamento administración facturación ventas recepción soporte""".split()
)

ZH_FORMS = (
    "先生|女士|小姐|老师|同学|经理|总监|主任|医生|大夫|教授|律师|阿姨|叔叔|师傅|总|董|工|姐|哥|主管|专员|处长|科长|局长|老板|"
    "警官|法官|护士|会计|秘书|助理|队长|所长|站长|厂长|院长|校长|书记|部长|行长|导游|教练"
)
# turn labels of the person being served: a turn that is only a name is one ("Customer: Lorna Baxter.")
SPEAKERS = "customer|caller|user|client|cliente|kunde|kundin|usuario|utilisateur|utilisatrice|appelant|appelante|anrufer"
# places that official registers also list as given names (London, Paris, Savannah): without context they are places
PLACE_NAMES = frozenset(
    """London Paris Rome Roma France Florence Sydney Austin Dallas Houston Phoenix Denver Orlando Georgia Virginia
    Carolina Dakota Jordan India China Asia Africa America Israel Chelsea Victoria Madison Brooklyn Savannah Boston
    Berlin Madrid Sevilla Valencia Toledo Lourdes Siena Verona Milan Vienna Geneva Lorraine Normandie Bretagne
    Kent York Lincoln Chester Windsor Camden Logan Devon Cornwall Sierra Nevada Roman Egypt Kenya Cuba Peru Chile
    Argentina Brazil Bolivia Colombia Venezuela Panama Jamaica Italia Germany Canada Mexico Japan Sahara""".split()
)
# articles: a listed word after one is a title or a thing ("El Niño", "The Mona Lisa", "the John Lewis store")
ARTICLES = frozenset("the The El La Le Les Los Las Der Die Das Il Lo el le".split())
# possessives: a listed word right after one is something owned ("my Ember Coffee Grinder", "meine Luna Lampe");
# a person after a possessive comes with a relation noun ("my cousin Anna", FAMILY above), which is its own rule
POSSESSIVES = frozenset(
    """my My our Our your Your their Their mein Mein meine Meine meinen unser Unser unsere Unsere
    mon Mon ma Ma mes Mes notre Notre votre Votre mi Mi mis Mis nuestro Nuestro nuestra Nuestra""".split()
)
