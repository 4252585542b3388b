"""Padding-free forwards: which one to use, the BERT encoder, the decoder, packed rows, fused linears."""
