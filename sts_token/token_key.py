"""A decoder key made ready for tokens: its block cipher built once, together with its base date."""

from __future__ import annotations

from sts_token.ea07 import Ea07Cipher, Ea07Tables, load_ea07_tables
from sts_token.identifiers import BaseDate, EncryptionAlgorithm
from sts_token.keys import DecoderKey
from sts_token.misty1 import Misty1


class TokenKey:
    """Everything needed to encrypt or decrypt a meter's tokens; build once, reuse per token.

    ``ea07_tables`` is needed only for EA07 keys; when omitted they are loaded from
    ``$STS_EA07_TABLES`` and :class:`~sts_token.errors.Ea07TablesMissing` is raised without them.
    """

    __slots__ = ("_decoder_key", "_base_date", "_cipher")

    def __init__(
        self,
        decoder_key: DecoderKey,
        base_date: BaseDate,
        *,
        ea07_tables: Ea07Tables | None = None,
    ) -> None:
        self._decoder_key = decoder_key
        self._base_date = base_date
        self._cipher: Ea07Cipher | Misty1
        if decoder_key.ea is EncryptionAlgorithm.EA07:
            tables = ea07_tables if ea07_tables is not None else load_ea07_tables()
            self._cipher = Ea07Cipher(decoder_key.value, tables)
        else:
            self._cipher = Misty1(decoder_key.value)

    @property
    def decoder_key(self) -> DecoderKey:
        """The decoder key this was built from."""
        return self._decoder_key

    @property
    def base_date(self) -> BaseDate:
        """The base date TIDs of this key count from."""
        return self._base_date

    @property
    def ea(self) -> EncryptionAlgorithm:
        """The encryption algorithm of the key."""
        return self._decoder_key.ea

    def encrypt(self, block: int) -> int:
        """Encrypt one 64-bit data block."""
        return self._cipher.encrypt(block)

    def decrypt(self, block: int) -> int:
        """Decrypt one 64-bit data block."""
        return self._cipher.decrypt(block)

    def __repr__(self) -> str:
        return f"TokenKey(ea=EA{self.ea.value}, base_date={self._base_date.year})"
