//! Sessions: a model, a tokenizer and a KV cache turned into text generation.
