"""The ``transformer`` head: a full sequence-classifier reward model, fine-tuned end to end.

``AutoModelForSequenceClassification(num_labels=1)`` from any local Hugging Face model directory
(default: the bundled all-MiniLM-L6-v2, so it runs on CPU), trained with the Bradley–Terry loss
``-logsigmoid(r(x, y+) - r(x, y-))`` on chosen and rejected in one forward pass per batch.

Input text
    ``template=auto`` uses the tokenizer's chat template when it has one (a user turn holding the
    prompt, an assistant turn holding the response), else ``pair``: the tokenizer's own
    sentence-pair encoding, ``tokenizer(prompt, response)`` (``[CLS] prompt [SEP] response [SEP]``
    for BERT, RoBERTa and DeBERTa, the paper's backbones). A saved head is scored by plain
    transformers with exactly that call.
Truncation
    The prompt's start is cut first, then the response's end (``encoding``).
Several processes
    Hugging Face accelerate (DDP; FSDP or DeepSpeed through an accelerate config), launched with
    ``accelerate launch`` or ``torchrun`` (``distributed``); the global batch does not depend on the
    number of processes (``head``).
Saved format
    ``save_pretrained`` of model and tokenizer (safetensors), so
    ``AutoModelForSequenceClassification.from_pretrained(dir)`` loads it; marsctl's own metadata goes
    to ``marsctl.json`` (``meta_file``) so it does not overwrite Hugging Face's ``config.json``.

Modules: ``config`` (the parameters), ``encoding`` (tokenisation and truncation), ``distributed``
(accelerate, devices, precision, ranks) and ``head`` (``TransformerHead``, the entry point).
"""
