"""The lessons' core ideas written from scratch, each tested against the library that does it for real.

``quant``  block-wise absmax quantization, NF4/FP4/int4 code tables, packing, double quantization
           (notebooks 01-02; checked bit for bit against bitsandbytes)
``lora``   LoRA and QLoRA linear layers, dequantize-in-backward, injection into a model
           (notebook 03; checked against peft and bitsandbytes)
"""
