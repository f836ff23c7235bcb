include $(sort $(wildcard $(BR2_EXTERNAL_SALVOR_PATH)/package/*/*.mk))
