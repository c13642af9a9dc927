"""Load the web pages in headless Chromium, submit through the form, see the job listed.

Usage: browser_check.py URL CHROMIUM CHROMEDRIVER
"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

url, chromium, chromedriver = sys.argv[1:4]
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
    opts.add_argument(arg)
driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
wait = WebDriverWait(driver, 20)
try:
    driver.get(url + "/jobs")
    assert "Jobs" in driver.title, driver.title
    print("ok jobs page", flush=True)
    driver.find_element(By.ID, "submit-link").click()
    wait.until(EC.presence_of_element_located((By.ID, "submit-form")))
    driver.find_element(By.ID, "command").send_keys("seq 3")
    driver.find_element(By.NAME, "num_tasks").send_keys("1")
    driver.find_element(By.ID, "submit-button").click()
    # The job page: its output arrives by streaming.
    wait.until(EC.url_contains("/job/"))
    job_id = driver.current_url.rsplit("/", 1)[-1]
    wait.until(lambda d: d.find_element(By.ID, "output").text.strip() == "1\n2\n3")
    print("ok output streamed", flush=True)
    # The jobs table lists it, and its live state reaches INACTIVE without a reload.
    driver.get(url + "/jobs")
    row = f'tr[data-id="{job_id}"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    print("ok listed", flush=True)
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, row + " td.state").text == "INACTIVE"
    )
    print("ok live state", flush=True)
    name = driver.find_element(By.CSS_SELECTOR, row + " td:nth-child(2)").text
    assert name == "seq", name
    # A second job submitted behind the page's back appears without a reload.
    before = len(driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr"))
    driver.execute_script(
        "fetch('/v1/jobs/submit?command=sleep+30', {method: 'POST'})"
    )
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")) == before + 1)
    print("ok table refreshes", flush=True)
    print("ALL OK")
finally:
    driver.quit()
