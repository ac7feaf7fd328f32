//! radclient, the FreeRADIUS reference client, driving radacctd from packet files under fixtures/radclient.
