/// Language models: model families read from Hugging Face checkpoint directories, tokenizers, chat
/// templates, generation and the teacher-forced scoring primitive every objective uses.
public enum LMInfo {}
