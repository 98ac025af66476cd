//! Small embedded code tables with real codes from LOINC, SNOMED CT, RxNorm,
//! CVX and ICD-10-CM, so generated resources look like a real EHR's.

/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// RxNorm.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// CVX vaccine codes.
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
/// ICD-10-CM.
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// US NPI identifiers.
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
/// US Core's CarePlan category code system (`assess-plan`).
pub const US_CORE_CAREPLAN_CATEGORY: &str = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category";
/// HL7 terminology base.
pub const THO: &str = "http://terminology.hl7.org/CodeSystem/";

/// A measurement: LOINC code, display, category, UCUM unit, range in tenths.
pub struct Measure {
    pub code: &'static str,
    pub display: &'static str,
    pub category: &'static str,
    pub unit: &'static str,
    pub min_tenths: i64,
    pub max_tenths: i64,
}

const fn m(
    code: &'static str,
    display: &'static str,
    category: &'static str,
    unit: &'static str,
    min_tenths: i64,
    max_tenths: i64,
) -> Measure {
    Measure { code, display, category, unit, min_tenths, max_tenths }
}

/// Observations, vital signs first then laboratory.
pub const MEASURES: &[Measure] = &[
    m("8867-4", "Heart rate", "vital-signs", "/min", 500, 1100),
    m("8480-6", "Systolic blood pressure", "vital-signs", "mm[Hg]", 950, 1600),
    m("8462-4", "Diastolic blood pressure", "vital-signs", "mm[Hg]", 550, 1000),
    m("29463-7", "Body weight", "vital-signs", "kg", 450, 1200),
    m("8302-2", "Body height", "vital-signs", "cm", 1500, 1950),
    m("39156-5", "Body mass index (BMI) [Ratio]", "vital-signs", "kg/m2", 185, 350),
    m("8310-5", "Body temperature", "vital-signs", "Cel", 361, 385),
    m("9279-1", "Respiratory rate", "vital-signs", "/min", 120, 200),
    m("2339-0", "Glucose [Mass/volume] in Blood", "laboratory", "mg/dL", 700, 1800),
    m("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "laboratory", "%", 48, 95),
    m("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "laboratory", "mg/dL", 1400, 2600),
    m("718-7", "Hemoglobin [Mass/volume] in Blood", "laboratory", "g/dL", 115, 175),
];

/// A coded concept: code and display (system given by the table).
pub type Concept = (&'static str, &'static str);

/// Conditions: SNOMED CT with the matching ICD-10-CM code.
pub const CONDITIONS: &[(&str, &str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2 (disorder)", "E11.9"),
    ("38341003", "Hypertensive disorder, systemic arterial (disorder)", "I10"),
    ("195967001", "Asthma (disorder)", "J45.909"),
    ("55822004", "Hyperlipidemia (disorder)", "E78.5"),
    ("35489007", "Depressive disorder (disorder)", "F32.9"),
    ("40055000", "Chronic sinusitis (disorder)", "J32.9"),
    ("10509002", "Acute bronchitis (disorder)", "J20.9"),
    ("444814009", "Viral sinusitis (disorder)", "J01.90"),
    ("162864005", "Body mass index 30+ - obesity (finding)", "E66.9"),
    ("68496003", "Polyp of colon (disorder)", "K63.5"),
];
/// Index of type 2 diabetes in [`CONDITIONS`] (the diabetes cohort has it).
pub const DIABETES: usize = 0;

/// Procedures (SNOMED CT).
pub const PROCEDURES: &[Concept] = &[
    ("73761001", "Colonoscopy (procedure)"),
    ("80146002", "Appendectomy (procedure)"),
    ("430193006", "Medication reconciliation (procedure)"),
    ("171207006", "Depression screening (procedure)"),
    ("710824005", "Assessment of health and social care needs (procedure)"),
    ("76601001", "Intramuscular injection (procedure)"),
];

/// Medications (RxNorm).
pub const MEDICATIONS: &[Concept] = &[
    ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("197361", "amLODIPine 5 MG Oral Tablet"),
    ("310798", "Hydrochlorothiazide 25 MG Oral Tablet"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
    ("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
    ("849574", "Naproxen sodium 220 MG Oral Tablet"),
    ("259255", "Atorvastatin 80 MG Oral Tablet"),
];

/// Vaccines (CVX).
pub const VACCINES: &[Concept] = &[
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("08", "Hep B, adolescent or pediatric"),
    ("133", "Pneumococcal conjugate PCV 13"),
    ("113", "Td (adult) preservative free"),
    ("115", "Tdap"),
    ("62", "HPV, quadrivalent"),
    ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    ("21", "varicella"),
    ("03", "MMR"),
];

/// Allergies (SNOMED CT) with their AllergyIntolerance category.
pub const ALLERGIES: &[(&str, &str, &str)] = &[
    ("91936005", "Allergy to penicillin (finding)", "medication"),
    ("300913006", "Shellfish allergy (disorder)", "food"),
    ("91935009", "Allergy to peanuts (disorder)", "food"),
    ("418689008", "Allergy to grass pollen (disorder)", "environment"),
    ("232350006", "House dust mite allergy (disorder)", "environment"),
    ("419474003", "Allergy to mould (disorder)", "environment"),
];

/// Encounter types (SNOMED CT) with the v3 ActCode class.
pub const ENCOUNTER_TYPES: &[(&str, &str, &str, &str)] = &[
    ("185349003", "Encounter for check up (procedure)", "AMB", "ambulatory"),
    ("185345009", "Encounter for symptom (procedure)", "AMB", "ambulatory"),
    ("162673000", "General examination of patient (procedure)", "AMB", "ambulatory"),
    ("50849002", "Emergency room admission (procedure)", "EMER", "emergency"),
    ("410620009", "Well child visit (procedure)", "AMB", "ambulatory"),
];

/// Laboratory report panels (LOINC).
pub const PANELS: &[Concept] = &[
    ("58410-2", "CBC panel - Blood by Automated count"),
    ("51990-0", "Basic metabolic panel - Blood"),
    ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    ("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
];

/// Clinical note types (LOINC).
pub const NOTE_TYPES: &[Concept] = &[
    ("34117-2", "History and physical note"),
    ("11506-3", "Progress note"),
    ("18842-5", "Discharge summary"),
    ("34111-5", "Emergency department note"),
];

/// Devices (SNOMED CT).
pub const DEVICES: &[Concept] = &[
    ("337414009", "Blood glucose meter (physical object)"),
    ("14106009", "Cardiac pacemaker, device (physical object)"),
    ("72506001", "Implantable defibrillator, device (physical object)"),
];

/// Given names, female.
pub const GIVEN_FEMALE: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Sandra",
    "Margaret",
    "Ashley",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
];
/// Given names, male.
pub const GIVEN_MALE: &[&str] = &[
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Christopher",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Andrew",
    "Paul",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
];
/// Family names.
pub const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
];
/// Street names.
pub const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Pine St",
    "Elm St",
    "Washington Blvd",
    "Lakeview Rd",
    "Hillside Ave",
    "Park Pl",
    "River Rd",
    "Sunset Blvd",
];
/// Cities with state and a ZIP code prefix.
pub const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "MA", "021"),
    ("Worcester", "MA", "016"),
    ("Springfield", "MA", "011"),
    ("Providence", "RI", "029"),
    ("Hartford", "CT", "061"),
    ("Burlington", "VT", "054"),
    ("Portland", "ME", "041"),
    ("Manchester", "NH", "031"),
];
/// Provider organisation name stems.
pub const PROVIDER_NAMES: &[&str] = &[
    "General Hospital",
    "Community Health Center",
    "Family Medicine Associates",
    "Medical Center",
    "Pediatrics Group",
    "Internal Medicine Clinic",
    "Urgent Care",
];
/// Payer names.
pub const PAYER_NAMES: &[&str] = &[
    "Blue Harbor Health Plan",
    "Medicare",
    "Medicaid",
    "Granite Mutual Insurance",
    "Evergreen Health Partners",
    "Atlantic Care Insurance",
];

// Text beyond ASCII, for the share of resources `Synthetic::non_ascii`
// picks: every list mixes 2-byte (accented Latin, Greek, Cyrillic), 3-byte
// (CJK, Hangul, Vietnamese) and, where real text has them, 4-byte UTF-8
// characters (emoji, the CJK extension B `𠮷` of the surname `𠮷田`).

/// Given names beyond ASCII, female.
pub const GIVEN_FEMALE_INTL: &[&str] =
    &["Zoë", "Renée", "Małgorzata", "Björk", "Anaïs", "Yến", "美咲", "서연", "Αλεξάνδρα", "Наталья"];
/// Given names beyond ASCII, male.
pub const GIVEN_MALE_INTL: &[&str] =
    &["José", "Łukasz", "Søren", "François", "Jürgen", "Đức", "翔太", "민준", "伟", "Δημήτρης", "Дмитрий"];
/// Family names beyond ASCII.
pub const FAMILY_INTL: &[&str] = &[
    "Müller",
    "Ørsted",
    "Dvořák",
    "Núñez",
    "Wójcik",
    "Nguyễn",
    "Trần",
    "王",
    "佐藤",
    "김",
    "박",
    "𠮷田",
    "Παπαδόπουλος",
    "Đorđević",
];
/// Street names beyond ASCII.
pub const STREETS_INTL: &[&str] = &[
    "Peña Blvd",
    "Côte-des-Neiges Rd",
    "Müllerstraße",
    "Søndergade",
    "Rua São João",
    "中央通り",
    "세종대로",
    "𠮷田通り",
];
/// Clinical notes beyond ASCII (Condition notes, attachment comments), each with an emoji.
pub const CLINICAL_NOTES_INTL: &[&str] = &[
    "Douleur légère à l'effort, suivi dans trois mois 🩺",
    "Patient reports feeling better 😊, sleeping well",
    "患者は安定しています 🙂",
    "Blutdruck stabil — Kontrolle in zwei Wochen 👍",
    "혈압 안정, 3개월 후 추적 관찰 🩺",
    "Síntomas estables; control en tres meses 🙂",
];
/// Medication notes beyond ASCII, each with an emoji.
pub const MEDICATION_NOTES_INTL: &[&str] = &[
    "💊 Take with food — à prendre avec de la nourriture",
    "💊 食後に服用してください",
    "💊 Einnahme morgens, nüchtern",
    "💊 Tomar con agua; evitar el alcohol",
];
/// The care plan's title in other languages, for its narrative.
pub const CARE_PLAN_TITLES_INTL: &[&str] = &[
    "plan de soins des maladies chroniques 🩺",
    "慢性疾患管理計画 🩺",
    "plan de manejo de enfermedades crónicas 🩺",
    "만성질환 관리 계획 🩺",
    "Behandlungsplan für chronische Erkrankungen 🩺",
];
