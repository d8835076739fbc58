"""Reading DICOM headers: identity (UIDs) and the few fields a folder layout needs."""
