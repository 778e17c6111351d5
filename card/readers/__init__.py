"""The production readers and card profiles (docs/architecture.md, "Cards"): PC/SC
through pcscd (``pcsc``), the PIV and HiCOS card profiles (``piv``, ``hicos``), which
profile a card has and its login certificate (``profiles``), and the PKCS#11 module
HiCOS cards sign with (``pkcs11``).
"""
