terraform {
  required_version = ">= 1.10.0"
  required_providers {
    tencentcloud = {
      source  = "tencentcloudstack/tencentcloud"
      version = "1.81.50"
    }
  }
}
