<?php
// Written by AINI: the OnlyOffice connector's settings (edit aini.yml, not this file).
if (getenv('AINI_ONLYOFFICE_URL')) {
  $CONFIG = array(
    'onlyoffice' => array(
      'DocumentServerUrl' => getenv('AINI_ONLYOFFICE_URL'),
      'DocumentServerInternalUrl' => getenv('AINI_ONLYOFFICE_INTERNAL_URL'),
      'StorageUrl' => getenv('AINI_NEXTCLOUD_INTERNAL_URL'),
      'jwt_secret' => getenv('AINI_ONLYOFFICE_JWT_SECRET'),
      'jwt_header' => 'Authorization',
    ),
  );
}
